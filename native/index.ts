// The node runtime's public face: `createRuntime` for running capsules, and
// the GPU helpers (`discoverGpus`, CDI, `gpuReport`) and `nodeResources` for
// membership metadata and `bolt-agent gpu`. Nothing here imports other
// project folders.
import { createHash } from 'node:crypto'
import { mkdir, rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { readFile } from 'node:fs/promises'
import { rootlessIds } from './rootless.js'
import { runCommand } from './command.js'
import { crunRefusesHybrid, detectCgroups, type CgroupLayout } from './cgroups.js'
import { chooseRuntime, OciRuntimeDriver, type RuntimeName } from './oci/driver.js'
import { RuntimeUnsupportedError } from './errors.js'
import { ImageStore, type RootfsMode } from './image/store.js'
import { DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_MAX_FILES } from './logs.js'
import { NodeRuntime, type DeviceProvider } from './runtime.js'
import { RUNTIME_FAILURES, type NodeRuntimeDeps } from './runtime-types.js'
import { discoverGpus, type DiscoverOptions, type GpuInfo } from './gpu/discover.js'
import { CdiRegistry, DEFAULT_CDI_DIRS, ensureCdiSpecs, readCdiSpecs, type CdiSpec } from './gpu/cdi.js'
import { gamingEdits } from './gpu/gaming.js'
import { BridgeNetwork } from './net/bridge.js'

export * from './errors.js'
export { NodeRuntime, type CapsuleHandle, type CapsuleState, type CapsuleStatus, type RecoveryReport } from './runtime.js'
export { RUNTIME_FAILURES }
export { CapsuleRunSpecSchema, parseRunSpec, type CapsuleRunSpec, type CapsuleRunSpecInput } from './spec.js'
export type { CapsuleExit } from './capsule-state.js'
export type { CgroupStats, CgroupLayout, CgroupMode } from './cgroups.js'
export { cgroupPrefixOf } from './cgroups.js'
export type { LogRecord, LogStream } from './logs.js'
export type { ExecResult, RuntimeName, InstalledRuntime } from './oci/driver.js'
export { detectRuntimes, OciRuntimeDriver } from './oci/driver.js'
export type { PreparedImage, RootfsMode } from './image/store.js'
export { buildRuntimeConfig } from './bundle/config.js'
export type { OciSpec } from './bundle/oci-spec.js'
export { discoverGpus, parseNvidiaSmiCsv, type GpuInfo, type GpuVendor, type NvidiaSmiRunner } from './gpu/discover.js'
export { CdiRegistry, CdiSpecSchema, DEFAULT_CDI_DIRS, ensureCdiSpecs, generateCdiSpecs, readCdiSpecs, type CdiSpec, type LoadedCdiSpec } from './gpu/cdi.js'
export { applyContainerEdits, type ContainerEdits } from './gpu/edits.js'
export { gamingEdits, GAMING_ENV } from './gpu/gaming.js'
export { nodeResources, type NodeResources, type NodeGpu } from './resources.js'
export { BridgeNetwork, BRIDGE_DNS_PORT, PortMappingSchema, type PortMapping, type Attachment } from './net/bridge.js'
export { parseSubnet, formatSubnet, gatewayOf, overlaps, type Subnet } from './net/cidr.js'

/** Names of this data dir's network namespaces start with it: two agents on one host never touch each other's. */
export function netnsPrefix (dataDir: string): string {
  return `bolt-${createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 6)}`
}

export interface RuntimeOptions {
  /** Where images, layers, capsules and the OCI runtime's state live. */
  dataDir: string
  /** Which OCI runtime; `auto` takes runc if installed, else crun. */
  runtime?: RuntimeName | 'auto'
  /** Run without root (user namespaces via uidmap). Default: when not uid 0. */
  rootless?: boolean
  /** overlayfs over shared layers, or a copy per capsule; `auto` uses overlay where the kernel allows it. */
  rootfsMode?: RootfsMode | 'auto'
  /** Host dirs capsules may bind as volumes. Default: none. */
  volumeRoots?: string[]
  log?: { maxBytes?: number, maxFiles?: number }
  /** Host root for device lookups (GPU, gaming): '/' except in tests. */
  hostRoot?: string
  cdiDirs?: string[]
  /** Adopt/clean capsules left by a previous agent at creation (default true). */
  recover?: boolean
  /** Let `gaming` capsules have the node's input and sound devices. Default: refused. */
  allowGaming?: boolean
  /** The capsule bridge (root only): interface name and this node's capsule subnet. */
  bridge?: { name: string, subnet: string }
  /** Failures that cannot fail a call (a log append, a record's last write): see NodeRuntimeDeps.onError. */
  onError?: NodeRuntimeDeps['onError']
}

/** Whether overlayfs can be mounted here, tried once in the data dir. */
async function overlayWorks (dir: string): Promise<boolean> {
  if (process.getuid?.() !== 0) return false
  const fs = await readFile('/proc/filesystems', 'utf8').catch(() => '') // unreadable: overlay not offered, the copy mode is used
  if (!/\boverlay\b/.test(fs)) return false
  const probe = join(dir, `overlay-probe-${process.pid}`)
  try {
    for (const d of ['l', 'u', 'w', 'm']) await mkdir(join(probe, d), { recursive: true })
    const r = await runCommand('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${join(probe, 'l')},upperdir=${join(probe, 'u')},workdir=${join(probe, 'w')}`, join(probe, 'm')])
    if (r.exitCode !== 0) return false
    await runCommand('umount', [join(probe, 'm')])
    return true
  } finally {
    await rm(probe, { recursive: true, force: true })
  }
}

function deviceProvider (hostRoot: string, cdiDirs: string[]): DeviceProvider {
  return {
    hostRoot,
    gpuEdits: async (request, inUse) => {
      let specs = await readCdiSpecs({ root: hostRoot, dirs: cdiDirs, onError: () => undefined })
      if (specs.length === 0) {
        await ensureCdiSpecs(await discoverGpus({ root: hostRoot }), { root: hostRoot, dirs: cdiDirs })
        specs = await readCdiSpecs({ root: hostRoot, dirs: cdiDirs, onError: () => undefined })
      }
      return new CdiRegistry(specs).resolve(request, inUse)
    },
    gamingEdits: async opts => await gamingEdits(opts ?? {}, hostRoot)
  }
}

/** Creates the node runtime on `dataDir`, detecting the OCI runtime and cgroups, and (by default) recovering capsules. */
export async function createRuntime (opts: RuntimeOptions): Promise<NodeRuntime> {
  const dataDir = resolve(opts.dataDir)
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const rootless = opts.rootless ?? process.getuid?.() !== 0
  const cgroups: CgroupLayout = await detectCgroups()
  const installed = await chooseRuntime(opts.runtime ?? 'auto')
  if (installed.name === 'crun' && rootless && crunRefusesHybrid(cgroups)) {
    // crun refuses hybrid cgroups with v2 controllers, and an unprivileged process cannot hide the v2 mount from it.
    throw new RuntimeUnsupportedError(`crun cannot run rootless on this cgroup v1 "hybrid" host (it refuses hybrid cgroups while cgroup2 has controllers: ${cgroups.unifiedControllers.join(' ')}; the workaround needs root): use runc, or run the agent as root`)
  }
  const driver = new OciRuntimeDriver(installed.name, installed.path, {
    stateRoot: join(dataDir, `${installed.name}-state`),
    // Rootless crun manages no cgroups here, and an unprivileged unshare -m could not unmount anyway.
    hybridCgroupWorkaround: installed.name === 'crun' && crunRefusesHybrid(cgroups) && !rootless,
    rootless
  })
  const wantMode = opts.rootfsMode ?? 'auto'
  const mode: RootfsMode = wantMode === 'auto' ? (!rootless && await overlayWorks(dataDir) ? 'overlay' : 'copy') : wantMode
  const images = new ImageStore(dataDir, mode, rootless)
  await images.init()
  const runtime = new NodeRuntime({
    dataDir,
    driver,
    images,
    cgroups,
    ...(rootless ? { rootless: await rootlessIds() } : {}),
    volumeRoots: opts.volumeRoots ?? [],
    log: { maxBytes: opts.log?.maxBytes ?? DEFAULT_LOG_MAX_BYTES, maxFiles: opts.log?.maxFiles ?? DEFAULT_LOG_MAX_FILES },
    devices: deviceProvider(opts.hostRoot ?? '/', opts.cdiDirs ?? DEFAULT_CDI_DIRS),
    allowGaming: opts.allowGaming === true,
    ...(opts.onError !== undefined ? { onError: opts.onError } : {}),
    ...(opts.bridge !== undefined && !rootless
      ? { bridge: new BridgeNetwork({ bridge: opts.bridge.name, subnet: opts.bridge.subnet, prefix: netnsPrefix(dataDir), stateDir: join(dataDir, 'net') }) }
      : {})
  })
  await runtime.init()
  if (opts.recover !== false) await runtime.recover()
  return runtime
}

export interface GpuReport {
  gpus: GpuInfo[]
  cdi: {
    dirs: string[]
    specs: Array<{ path: string, kind: string, devices: string[] }>
    /** Spec files this call generated because no spec described a vendor's GPUs. */
    generated: string[]
    errors: string[]
    /** The specs themselves, for `bolt-agent gpu --json`. */
    raw: CdiSpec[]
  }
}

/** What `bolt-agent gpu --json` prints: the GPUs this node sees and its CDI spec(s). */
export async function gpuReport (opts: DiscoverOptions & { cdiDirs?: string[], generate?: boolean } = {}): Promise<GpuReport> {
  const root = opts.root ?? '/'
  const dirs = opts.cdiDirs ?? DEFAULT_CDI_DIRS
  const gpus = await discoverGpus(opts)
  const errors: string[] = []
  const generated = opts.generate === false ? [] : await ensureCdiSpecs(gpus, { root, dirs }).catch((e: Error) => { errors.push(`generating CDI specs: ${e.message}`); return [] })
  const specs = await readCdiSpecs({ root, dirs, onError: e => { errors.push(e.message) } })
  return {
    gpus,
    cdi: {
      dirs,
      specs: specs.map(s => ({ path: s.path, kind: s.spec.kind, devices: s.spec.devices.map(d => `${s.spec.kind}=${d.name}`) })),
      generated,
      errors,
      raw: specs.map(s => s.spec)
    }
  }
}
