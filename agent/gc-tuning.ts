// How the agent's V8 decides to collect garbage under buffer churn. Moving
// blobs allocates a new ArrayBuffer for nearly every byte: each socket read,
// each decrypted frame, each encrypted one. By default V8 starts a full
// mark-compact of the whole heap each time 64 MB more such memory has been
// allocated since the last one, even though most of these buffers die young
// and a scavenge frees them. Measured with 8 agents pulling a 257 MiB image
// on 2 cores: 17-25 full collections per agent per pull, and the V8 helper
// threads as busy as a third of the machine.
//
// `--external-memory-accounted-in-global-limit` counts that memory in the
// heap's global limit instead, which grows with what is live. The same pull
// then takes 15-25% less CPU and finishes 10-20% sooner, and an agent's
// peak RSS is 100-200 MB higher: dead buffers wait longer for a collection
// (after a pull, V8's memory reducer collected them within 10-30 s idle).
// The edge profile keeps the default: there memory is the scarce thing, and
// an edge agent serves no pieces.
import { setFlagsFromString } from 'node:v8'
import type { Config } from './config.js'

export const AGENT_GC_FLAGS: readonly string[] = ['--external-memory-accounted-in-global-limit']

/** Sets AGENT_GC_FLAGS in this process unless the config is the edge profile; returns the flags set. */
export function tuneGc (config: Pick<Config, 'profile'> | undefined): readonly string[] {
  if (config?.profile === 'edge') return []
  // V8 reads this flag at each allocation-limit decision, so setting it
  // after start-up takes effect (see test/agent/gc-tuning.test.ts).
  for (const f of AGENT_GC_FLAGS) setFlagsFromString(f)
  return AGENT_GC_FLAGS
}
