// cgroups for capsules, v1 (and "hybrid") or v2: where the hierarchies are
// mounted, a per-capsule parent cgroup the runtime owns (the OCI runtime puts
// the capsule in a child of it and deletes only that child, so the parent's
// counters — OOM kills above all — survive the capsule's exit), and stats.
import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { CPU_PERIOD_US } from './bundle/config.js'

export type CgroupMode = 'v1' | 'hybrid' | 'v2' | 'none'

export interface CgroupLayout {
  mode: CgroupMode
  /** v1 controller (or `name=X` hierarchy) → mount point (cpu, cpuacct, memory, pids, name=systemd, ...). */
  v1: Record<string, string>
  /** The cgroup2 mount, when there is one. */
  unified?: string
  /** Controllers available in the cgroup2 root (`cgroup.controllers`). */
  unifiedControllers: string[]
}

const V1_CONTROLLERS = new Set(['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'net_cls', 'net_prio', 'blkio', 'perf_event', 'hugetlb', 'pids', 'rdma', 'misc'])

function unescapeMount (s: string): string {
  return s.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)))
}

/** Parses /proc/self/mountinfo text into a cgroup layout (pure; tests feed it fixtures). */
/** The cgroup under which one runtime's capsules live (`/bolt/HASH`), from its data dir: two agents on one host never share one. */
export function cgroupPrefixOf (dataDir: string): string {
  return `/bolt/${createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 12)}`
}

export function parseCgroupMounts (mountinfo: string): Omit<CgroupLayout, 'unifiedControllers'> {
  const v1: Record<string, string> = {}
  let unified: string | undefined
  for (const line of mountinfo.split('\n')) {
    const dash = line.indexOf(' - ')
    if (dash < 0) continue
    const left = line.slice(0, dash).split(' ')
    const right = line.slice(dash + 3).split(' ')
    const mountPoint = unescapeMount(left[4] ?? '')
    const fstype = right[0]
    if (fstype === 'cgroup2') unified ??= mountPoint
    else if (fstype === 'cgroup') {
      for (const opt of (right[2] ?? '').split(',')) {
        // Named hierarchies (name=systemd) hold no controller, but the OCI runtime makes cgroups there too.
        if (V1_CONTROLLERS.has(opt) || opt.startsWith('name=')) v1[opt] ??= mountPoint
      }
    }
  }
  const hasV1 = Object.keys(v1).length > 0
  const mode: CgroupMode = hasV1 ? (unified !== undefined ? 'hybrid' : 'v1') : (unified !== undefined ? 'v2' : 'none')
  return { mode, v1, ...(unified !== undefined ? { unified } : {}) }
}

/**
 * Whether crun refuses this host as it is: crun accepts a hybrid host only
 * while its cgroup2 hierarchy has no controller (a systemd hybrid host that
 * binds every controller to v1), and refuses it otherwise ("drop all
 * controllers from cgroupv2"). Only then is the private mount namespace that
 * hides the cgroup2 mount worth its processes on every crun call.
 */
export function crunRefusesHybrid (layout: Pick<CgroupLayout, 'mode' | 'unifiedControllers'>): boolean {
  return layout.mode === 'hybrid' && layout.unifiedControllers.length > 0
}

export async function detectCgroups (mountinfoPath = '/proc/self/mountinfo'): Promise<CgroupLayout> {
  const parsed = parseCgroupMounts(await readFile(mountinfoPath, 'utf8').catch(() => '')) // unreadable: no cgroups, mode 'none', which callers refuse clearly
  let unifiedControllers: string[] = []
  if (parsed.unified !== undefined) {
    // Unreadable: no controllers to enable, and the limits written later fail loudly.
    unifiedControllers = (await readFile(join(parsed.unified, 'cgroup.controllers'), 'utf8').catch(() => '')).trim().split(/\s+/).filter(Boolean)
  }
  return { ...parsed, unifiedControllers }
}

export interface CgroupStats {
  /** CPU time used, nanoseconds. */
  cpuNanos: number
  memoryBytes: number
  /** High-water mark, when the kernel reports it. */
  memoryPeakBytes: number | null
  memoryLimitBytes: number | null
  pids: number
  oomKills: number
}

async function readNum (file: string): Promise<number | null> {
  const text = await readFile(file, 'utf8').catch(() => undefined) // a stat the kernel does not offer (or a cgroup gone): no figure
  if (text === undefined) return null
  const t = text.trim()
  if (t === 'max') return null
  const n = Number(t)
  return Number.isFinite(n) ? n : null
}

async function readKeyed (file: string): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  const text = await readFile(file, 'utf8').catch(() => '') // a stat the kernel does not offer (or a cgroup gone): no keys
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/)
    if (k !== undefined && v !== undefined) out.set(k, Number(v))
  }
  return out
}

/** Charges are batched (up to 64 pages per CPU), so a peak this close to the limit means the limit was reached. */
const LIMIT_HIT_SLACK_BYTES = 1024 * 1024

/** v1 reports "no limit" as a huge page-rounded number. */
const V1_UNLIMITED = 2 ** 62

/**
 * The parent cgroup the runtime owns for one capsule, at `relPath` (e.g.
 * `/bolt/web-1`) in every hierarchy; the OCI runtime's cgroup is `relPath/capsule`.
 */
export class CapsuleCgroup {
  constructor (readonly layout: CgroupLayout, readonly relPath: string) {}

  get leafPath (): string {
    return `${this.relPath}/capsule`
  }

  private get isV2 (): boolean {
    return this.layout.mode === 'v2'
  }

  private dir (controller: string): string | undefined {
    if (this.isV2) return this.layout.unified === undefined ? undefined : join(this.layout.unified, this.relPath)
    const mp = this.layout.v1[controller]
    return mp === undefined ? undefined : join(mp, this.relPath)
  }

  /** Creates the parent cgroup and sets the memory limit (no swap beyond it) there. */
  async create (memoryBytes?: number): Promise<void> {
    if (this.isV2) {
      const root = this.layout.unified as string
      const want = ['cpu', 'memory', 'pids'].filter(c => this.layout.unifiedControllers.includes(c)).map(c => `+${c}`).join(' ')
      // Enable the controllers down the path so the capsule's cgroup gets them. Best effort: a level
      // that refuses costs only stats; memory.max below is written without a catch and fails loudly.
      let cur = root
      for (const part of this.relPath.split('/').filter(Boolean)) {
        if (want !== '') await writeFile(join(cur, 'cgroup.subtree_control'), want).catch(() => undefined) // best effort, see above
        cur = join(cur, part)
        await mkdir(cur, { recursive: true })
      }
      if (want !== '') await writeFile(join(cur, 'cgroup.subtree_control'), want).catch(() => undefined) // best effort, see above
      if (memoryBytes !== undefined) {
        await writeFile(join(cur, 'memory.max'), String(memoryBytes))
        await writeFile(join(cur, 'memory.swap.max'), '0').catch(absentWithoutSwapAccounting)
      }
      return
    }
    for (const c of ['memory', 'cpuacct', 'pids']) {
      const d = this.dir(c)
      if (d !== undefined) await mkdir(d, { recursive: true })
    }
    const mem = this.dir('memory')
    if (memoryBytes !== undefined && mem !== undefined) {
      await writeFile(join(mem, 'memory.limit_in_bytes'), String(memoryBytes))
      // memsw must be >= the memory limit; equal means no swap. Absent without swap accounting.
      await writeFile(join(mem, 'memory.memsw.limit_in_bytes'), String(memoryBytes)).catch(absentWithoutSwapAccounting)
    }
  }

  /**
   * Sets the CPU quota (`cpus` × a 100 ms period) on the parent cgroup, which
   * bounds the capsule's cgroup below it. Called once the capsule runs (see
   * BundleInput.cpuOnParent); v1 needs the OCI runtime to have made the
   * cpu hierarchy's directories by then.
   */
  async limitCpu (cpus: number): Promise<void> {
    const quota = Math.max(1000, Math.round(cpus * CPU_PERIOD_US))
    const d = this.dir('cpu')
    if (d === undefined) throw new Error('no cpu cgroup controller to limit the capsule\'s CPU')
    if (this.isV2) {
      await writeFile(join(d, 'cpu.max'), `${quota} ${CPU_PERIOD_US}`)
      return
    }
    await mkdir(d, { recursive: true })
    await writeFile(join(d, 'cpu.cfs_period_us'), String(CPU_PERIOD_US))
    await writeFile(join(d, 'cpu.cfs_quota_us'), String(quota))
  }

  async oomKills (): Promise<number> {
    if (this.isV2) {
      const d = this.dir('memory')
      if (d === undefined) return 0
      return (await readKeyed(join(d, 'memory.events'))).get('oom_kill') ?? 0
    }
    const d = this.dir('memory')
    if (d === undefined) return 0
    // oom_kill counts kills in this memcg; our limit lives here, so kills below are counted here.
    return (await readKeyed(join(d, 'memory.oom_control'))).get('oom_kill') ?? 0
  }

  /**
   * Whether the memory limit was hit (v1 `memory.failcnt` on this parent).
   * cgroup v1 counts OOM kills only in the victim's own memcg, which the OCI
   * runtime deletes on exit; a hit limit plus a SIGKILL exit is then the OOM signature.
   */
  async memoryLimitHit (): Promise<boolean> {
    if (this.isV2) return (await this.oomKills()) > 0
    const d = this.dir('memory')
    if (d === undefined) return false
    if (((await readNum(join(d, 'memory.failcnt'))) ?? 0) > 0) return true
    // Recent kernels may not count failcnt for v1; the peak reaching the limit says the same.
    const limit = await readNum(join(d, 'memory.limit_in_bytes'))
    const peak = await readNum(join(d, 'memory.max_usage_in_bytes'))
    return limit !== null && peak !== null && limit < V1_UNLIMITED && peak >= limit - LIMIT_HIT_SLACK_BYTES
  }

  async stats (): Promise<CgroupStats> {
    if (this.isV2) {
      const d = this.dir('memory') as string
      const cpu = await readKeyed(join(d, 'cpu.stat'))
      return {
        cpuNanos: (cpu.get('usage_usec') ?? 0) * 1000,
        memoryBytes: await readNum(join(d, 'memory.current')) ?? 0,
        memoryPeakBytes: await readNum(join(d, 'memory.peak')),
        memoryLimitBytes: await readNum(join(d, 'memory.max')),
        pids: await readNum(join(d, 'pids.current')) ?? 0,
        oomKills: await this.oomKills()
      }
    }
    const mem = this.dir('memory')
    const acct = this.dir('cpuacct')
    const pids = this.dir('pids')
    const limit = mem === undefined ? null : await readNum(join(mem, 'memory.limit_in_bytes'))
    return {
      cpuNanos: acct === undefined ? 0 : await readNum(join(acct, 'cpuacct.usage')) ?? 0,
      memoryBytes: mem === undefined ? 0 : await readNum(join(mem, 'memory.usage_in_bytes')) ?? 0,
      memoryPeakBytes: mem === undefined ? null : await readNum(join(mem, 'memory.max_usage_in_bytes')),
      memoryLimitBytes: limit === null || limit >= V1_UNLIMITED ? null : limit,
      pids: pids === undefined ? 0 : await readNum(join(pids, 'pids.current')) ?? 0,
      oomKills: await this.oomKills()
    }
  }

  /** Removes the parent cgroup (and anything left below it) in every hierarchy. */
  async remove (): Promise<void> {
    // On a hybrid host the OCI runtime also makes the cgroup in the (nearly empty) v2 hierarchy.
    const mounts = [...Object.values(this.layout.v1), ...(this.layout.unified !== undefined ? [this.layout.unified] : [])]
    const dirs = this.isV2
      ? [this.dir('memory')]
      : mounts.filter((v, i, a) => a.indexOf(v) === i).map(mp => join(mp, this.relPath))
    for (const d of dirs) {
      if (d === undefined) continue
      await removeCgroupDir(d)
      // The per-agent prefix goes too once its last capsule has (fails harmlessly while others remain).
      await rmdir(dirname(d)).catch(() => undefined)
    }
  }
}

/** The swap limit files exist only with swap accounting; without it there is no swap to limit. Any other failure is thrown. */
function absentWithoutSwapAccounting (err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err
}

async function removeCgroupDir (dir: string): Promise<void> {
  let entries
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch {
    return // gone already (or never made in this hierarchy)
  }
  for (const e of entries) if (e.isDirectory()) await removeCgroupDir(join(dir, e.name))
  // EBUSY while a killed process is not yet reaped: the empty cgroup holds no limit on anything else,
  // and the next capsule of this name reuses it (create makes it with recursive mkdir).
  await rmdir(dir).catch(() => undefined)
}
