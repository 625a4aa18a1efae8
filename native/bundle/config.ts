// Building a capsule's OCI runtime config.json from the image config and the
// capsule spec, with Docker-like defaults: the usual mounts, pid/mount/ipc/uts
// namespaces, a default capability set and seccomp profile, no-new-privileges,
// masked /proc paths, and resources as cgroup limits.
import { readFile, realpath } from 'node:fs/promises'
import { sep } from 'node:path'
import { InvalidSpecError, VolumeNotAllowedError } from '../errors.js'
import type { ImageConfig } from '../image/layout.js'
import type { CapsuleRunSpec } from '../spec.js'
import type { OciIdMapping, OciMount, OciSpec } from './oci-spec.js'
import { DEFAULT_CAPABILITIES, defaultSeccompProfile } from './seccomp.js'

export const OCI_VERSION = '1.0.2'
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
/** CFS period; the quota is cpus × this. 100 ms is the kernel's and Docker's default. */
export const CPU_PERIOD_US = 100_000
export const DEFAULT_RLIMIT_NOFILE = { soft: 1024, hard: 524288 }
/** /dev and /dev/shm sizes, as Docker's. */
export const DEV_TMPFS_SIZE = '65536k'

const MASKED_PATHS = ['/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap']
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']

/** The hard RLIMIT_NOFILE this process has; a capsule cannot be given more without CAP_SYS_RESOURCE on the host. */
export async function hostNofileHard (): Promise<number> {
  // Read once: this process's limits do not change while it runs, and every start asks.
  nofileHard ??= readNofileHard()
  return await nofileHard
}
let nofileHard: Promise<number> | undefined

async function readNofileHard (): Promise<number> {
  const text = await readFile('/proc/self/limits', 'utf8').catch(() => '') // no /proc here: the default limit below
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text)
  if (m === null || m[2] === 'unlimited') return DEFAULT_RLIMIT_NOFILE.hard
  return Number(m[2])
}

export interface RootlessIds {
  uid: number
  gid: number
  /** Extra ranges from /etc/subuid and /etc/subgid (used through newuidmap). */
  subuid?: { start: number, count: number }
  subgid?: { start: number, count: number }
}

export interface BundleInput {
  spec: CapsuleRunSpec
  image: ImageConfig
  /** Rootfs path (absolute, or relative to the bundle dir). */
  rootfs: string
  /** Cgroup path for the capsule (omitted when rootless without delegation). */
  cgroupsPath?: string
  /** Memory is limited on the parent cgroup by the runtime (so an OOM outlives the capsule's own cgroup); keep it out of config.json. */
  memoryOnParent?: boolean
  /**
   * The CPU quota is set on the parent cgroup by the runtime once the capsule
   * runs; keep it out of config.json, or the OCI runtime's own setup (runc
   * init runs in the capsule's cgroup) crawls at the capsule's quota: with
   * `--cpu 0.01` a start took 1.2 s instead of 0.1 s.
   */
  cpuOnParent?: boolean
  /** Use a cgroup namespace (cgroup v2 hosts). */
  cgroupNamespace?: boolean
  rootless?: RootlessIds
  /** Host directories under which volumes may be bound; anything else is refused. */
  volumeRoots: string[]
  /** Files generated per capsule and bound over /etc/{hostname,hosts,resolv.conf}. */
  etcFiles?: { hostname?: string, hosts?: string, resolvConf?: string }
}

/** Splits the image's Env and the spec's env into one list, the spec winning, PATH always set. */
export function mergeEnv (imageEnv: readonly string[], specEnv: Record<string, string>, hostname: string): string[] {
  const env = new Map<string, string>()
  for (const kv of imageEnv) {
    const i = kv.indexOf('=')
    if (i > 0) env.set(kv.slice(0, i), kv.slice(i + 1))
  }
  if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH)
  env.set('HOSTNAME', hostname)
  for (const [k, v] of Object.entries(specEnv)) env.set(k, v)
  return [...env].map(([k, v]) => `${k}=${v}`)
}

/** Docker's rule: an overridden entrypoint drops the image's Cmd. */
export function processArgs (spec: CapsuleRunSpec, image: ImageConfig): string[] {
  const entrypoint = spec.entrypoint ?? image.config?.Entrypoint ?? []
  const cmd = spec.args ?? (spec.entrypoint !== undefined ? [] : (image.config?.Cmd ?? []))
  const args = [...entrypoint, ...cmd]
  if (args.length === 0) throw new InvalidSpecError(`capsule ${spec.name}: neither the spec nor the image gives a command (set args)`)
  return args
}

function parseUser (user: string | undefined): { uid: number, gid: number } {
  if (user === undefined || user === '') return { uid: 0, gid: 0 }
  const m = /^(\d+)(?::(\d+))?$/.exec(user)
  if (m === null) throw new InvalidSpecError(`user ${JSON.stringify(user)} is not numeric ("uid" or "uid:gid"); set spec.user to numeric ids`)
  const uid = Number(m[1])
  return { uid, gid: m[2] !== undefined ? Number(m[2]) : uid }
}

export function effectiveCapabilities (capAdd: readonly string[], capDrop: readonly string[]): string[] {
  const caps = new Set(capDrop.includes('ALL') ? [] : DEFAULT_CAPABILITIES)
  for (const c of capDrop) caps.delete(c)
  for (const c of capAdd) caps.add(c)
  return [...caps].sort()
}

function inside (root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep)
}

/** Resolves each volume's host path (symlinks too) and checks it lies under a declared root. */
export async function volumeMounts (volumes: CapsuleRunSpec['volumes'], roots: readonly string[]): Promise<OciMount[]> {
  const realRoots = await Promise.all(roots.map(async r => await realpath(r).catch(() => r))) // a root not made yet holds no volume: kept as written
  const out: OciMount[] = []
  for (const v of volumes) {
    let host: string
    try {
      host = await realpath(v.hostPath)
    } catch {
      throw new VolumeNotAllowedError(`volume host path ${v.hostPath} does not exist on this node`)
    }
    if (!realRoots.some(r => inside(r, host))) {
      throw new VolumeNotAllowedError(`volume host path ${v.hostPath} is outside the declared volume roots (${roots.join(', ') || 'none declared'}): declare it in the agent config`)
    }
    out.push({ destination: v.containerPath, type: 'bind', source: host, options: ['rbind', 'rprivate', 'nosuid', 'nodev', v.readOnly ? 'ro' : 'rw'] })
  }
  return out
}

function idMappings (id: number, sub: { start: number, count: number } | undefined): OciIdMapping[] {
  const m: OciIdMapping[] = [{ containerID: 0, hostID: id, size: 1 }]
  if (sub !== undefined && sub.count > 0) m.push({ containerID: 1, hostID: sub.start, size: sub.count })
  return m
}

export async function buildRuntimeConfig (input: BundleInput): Promise<OciSpec> {
  const { spec, image, rootless } = input
  const hostname = spec.hostname ?? spec.name
  const caps = effectiveCapabilities(spec.capAdd, spec.capDrop)
  const privateNet = spec.network !== 'host'
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', `size=${DEV_TMPFS_SIZE}`] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: rootless !== undefined ? ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] : ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${DEV_TMPFS_SIZE}`] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    // A rootless capsule sharing the host's network namespace cannot mount a new sysfs: bind the host's, read-only.
    rootless !== undefined && !privateNet
      ? { destination: '/sys', type: 'none', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] }
      : { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] }
  ]
  if (rootless === undefined) mounts.push({ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] })
  const etc = input.etcFiles ?? {}
  if (etc.hostname !== undefined) mounts.push({ destination: '/etc/hostname', type: 'bind', source: etc.hostname, options: ['rbind', 'rprivate', 'ro'] })
  if (etc.hosts !== undefined) mounts.push({ destination: '/etc/hosts', type: 'bind', source: etc.hosts, options: ['rbind', 'rprivate', 'ro'] })
  if (etc.resolvConf !== undefined) mounts.push({ destination: '/etc/resolv.conf', type: 'bind', source: etc.resolvConf, options: ['rbind', 'rprivate', 'ro'] })
  mounts.push(...await volumeMounts(spec.volumes, input.volumeRoots))

  const namespaces: Array<{ type: string, path?: string }> = [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }]
  if (spec.network === 'private') namespaces.push({ type: 'network' })
  else if (typeof spec.network === 'object') {
    // The runtime turns a bridge request into the namespace it prepared before the bundle is written.
    if (!('netnsPath' in spec.network)) throw new InvalidSpecError(`capsule ${spec.name}: a bridge network must be attached (a namespace path) before its bundle is built`)
    namespaces.push({ type: 'network', path: spec.network.netnsPath })
  }
  if (input.cgroupNamespace === true) namespaces.push({ type: 'cgroup' })
  if (rootless !== undefined) namespaces.push({ type: 'user' })

  const nofileHard = Math.min(DEFAULT_RLIMIT_NOFILE.hard, await hostNofileHard())
  const rlimits = new Map<string, { type: string, soft: number, hard: number }>([['RLIMIT_NOFILE', { type: 'RLIMIT_NOFILE', soft: Math.min(DEFAULT_RLIMIT_NOFILE.soft, nofileHard), hard: nofileHard }]])
  for (const r of spec.rlimits ?? []) rlimits.set(r.type, r)

  const config: OciSpec = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: false,
      user: parseUser(spec.user ?? image.config?.User),
      args: processArgs(spec, image),
      env: mergeEnv(image.config?.Env ?? [], spec.env, hostname),
      cwd: spec.cwd ?? (image.config?.WorkingDir !== undefined && image.config.WorkingDir !== '' ? image.config.WorkingDir : '/'),
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [...rlimits.values()],
      noNewPrivileges: true,
      oomScoreAdj: 0
    },
    root: { path: input.rootfs, readonly: spec.readOnlyRootfs },
    hostname,
    mounts,
    annotations: { 'org.bolt.capsule.name': spec.name, ...Object.fromEntries(Object.entries(spec.labels).map(([k, v]) => [`org.bolt.label.${k}`, v])) },
    linux: {
      namespaces,
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
      seccomp: defaultSeccompProfile(caps)
    }
  }
  if (rootless !== undefined) {
    config.linux.uidMappings = idMappings(rootless.uid, rootless.subuid)
    config.linux.gidMappings = idMappings(rootless.gid, rootless.subgid)
  }
  if (input.cgroupsPath !== undefined) {
    config.linux.cgroupsPath = input.cgroupsPath
    const r = spec.resources
    config.linux.resources = { devices: [{ allow: false, access: 'rwm' }] }
    if (r.memoryBytes !== undefined && input.memoryOnParent !== true) config.linux.resources.memory = { limit: r.memoryBytes, swap: r.memoryBytes }
    if ((r.cpus !== undefined && input.cpuOnParent !== true) || r.cpuShares !== undefined) {
      config.linux.resources.cpu = {}
      if (r.cpus !== undefined && input.cpuOnParent !== true) { config.linux.resources.cpu.quota = Math.round(r.cpus * CPU_PERIOD_US); config.linux.resources.cpu.period = CPU_PERIOD_US }
      if (r.cpuShares !== undefined) config.linux.resources.cpu.shares = r.cpuShares
    }
    if (r.pids !== undefined) config.linux.resources.pids = { limit: r.pids }
  }
  return config
}
