// `bolt-agent dev`'s demo: a capsule from an image built on this node from
// the host's busybox, so a newcomer sees one run with no registry at all.
import type { CapsuleHost } from './capsule-host.js'
import { busyboxPath, DEMO_REF } from './demo-image.js'
import type { RaftHost } from './raft/raft-host.js'
import { CapsuleSpecSchema } from './scheduler/spec.js'

/**
 * The demo's command. Its shell is the capsule's PID 1, which the kernel
 * shields from signals it has no handler for: without the trap, a stop (and
 * dev's Ctrl-C) waited out the stop timeout and killed it. `sleep & wait`
 * lets the trap run at once instead of after the sleep.
 */
export const DEMO_ARGS = ['/bin/sh', '-c', "trap 'exit 0' TERM INT; echo hello from a bolt capsule; while true; do date; sleep 5 & wait $!; done"]

/** Submits the demo capsule; returns why it could not be started, or undefined. */
export async function runDemoCapsule (capsules: Pick<CapsuleHost, 'runtime' | 'runtimeError'>, raft: Pick<RaftHost, 'write'>): Promise<string | undefined> {
  if (busyboxPath() === undefined) return 'no busybox on this host (apt-get install busybox-static) for the demo image'
  if (capsules.runtime === undefined) return capsules.runtimeError ?? 'no OCI runtime on this node'
  // The demo needs no network: `none` leaves the host's interfaces and firewall as they were.
  const spec = CapsuleSpecSchema.parse({ name: 'demo', image: DEMO_REF, args: DEMO_ARGS, resources: { cpu: 0.1, memoryBytes: 32 * 1024 * 1024 }, network: 'none' })
  const r = await raft.write({ op: 'capsule.create', spec })
  return r.ok ? undefined : r.reason
}
