// The capsule's own files beside its OCI bundle (hostname, hosts,
// resolv.conf, bind-mounted into it) and the bundle's config.json content:
// the runtime config built from the run spec and the image, plus what the
// gaming profile raises.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buildRuntimeConfig, hostNofileHard, type RootlessIds } from './config.js'
import type { OciSpec } from './oci-spec.js'
import type { CapsuleRunSpec } from '../spec.js'
import type { ImageConfig } from '../image/layout.js'
import { mkdirWithMode, writeNewFile } from '../file-modes.js'

export interface CapsuleBundleInput {
  spec: CapsuleRunSpec & { bridgeGateway?: string }
  image: ImageConfig
  /** The bundle dir; its rootfs is `rootfs`. */
  dir: string
  rootfs: string
  /** The capsule's cgroup leaf, when the node sets limits. */
  cgroupsPath?: string
  cgroupNamespace: boolean
  rootless?: RootlessIds
  volumeRoots: string[]
}

/** Writes the capsule's etc files into `dir/etc` and returns its runtime config. */
export async function capsuleBundleConfig (b: CapsuleBundleInput): Promise<OciSpec> {
  const { spec, dir } = b
  const hostname = spec.hostname ?? spec.name
  const etcDir = join(dir, 'etc')
  // Independent file system calls side by side: on a start each one waits its turn in libuv's thread pool.
  const [resolv] = await Promise.all([
    readFile('/etc/resolv.conf', 'utf8').catch(() => 'nameserver 1.1.1.1\n'),
    // Bind-mounted into the capsule, where any of its users reads them.
    mkdirWithMode(etcDir, 0o755)
  ])
  const outside = resolv.replace(/^nameserver\s+127\.\S+\s*$/gm, '')
  const [config] = await Promise.all([
    buildRuntimeConfig({
      spec,
      image: b.image,
      rootfs: b.rootfs,
      ...(b.cgroupsPath !== undefined ? { cgroupsPath: b.cgroupsPath, memoryOnParent: true, cpuOnParent: true } : {}),
      cgroupNamespace: b.cgroupNamespace,
      ...(b.rootless !== undefined ? { rootless: b.rootless } : {}),
      volumeRoots: b.volumeRoots,
      etcFiles: { hostname: join(etcDir, 'hostname'), hosts: join(etcDir, 'hosts'), resolvConf: join(etcDir, 'resolv.conf') }
    }),
    writeNewFile(join(etcDir, 'hostname'), `${hostname}\n`, 0o644),
    writeNewFile(join(etcDir, 'hosts'), `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${hostname}\n`, 0o644),
    // A bridge capsule asks the node's DNS on the bridge first (the agent serves *.bolt there), then the host's own resolvers.
    writeNewFile(join(etcDir, 'resolv.conf'), spec.network === 'host' ? resolv : spec.bridgeGateway !== undefined ? `nameserver ${spec.bridgeGateway}\n${outside}` : outside, 0o644)
  ])
  if (spec.gaming !== undefined && spec.gaming !== false) {
    // esync/fsync in Wine and Proton want a high open-file limit.
    const hard = await hostNofileHard()
    config.process.rlimits = config.process.rlimits.map(r => r.type === 'RLIMIT_NOFILE' ? { type: r.type, soft: Math.min(hard, Math.max(r.soft, 524288)), hard: Math.min(hard, Math.max(r.hard, 524288)) } : r)
  }
  return config
}
