// What this node offers the scheduler: CPUs (the cgroup quota if the agent is
// itself limited), memory (likewise), and GPUs. Goes into membership metadata.
import { availableParallelism, totalmem } from 'node:os'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { discoverGpus, type DiscoverOptions } from './gpu/discover.js'

export interface NodeGpu {
  vendor: 'nvidia' | 'amd' | 'intel'
  model: string
  memoryBytes: number | null
  index: number
}

export interface NodeResources {
  cpus: number
  memoryBytes: number
  gpus: NodeGpu[]
}

async function num (p: string): Promise<number | undefined> {
  const t = await readFile(p, 'utf8').then(s => s.trim(), () => undefined)
  if (t === undefined || t === 'max' || t === '') return undefined
  const n = Number(t.split(/\s+/)[0])
  return Number.isFinite(n) ? n : undefined
}

/** The agent's own cgroup paths, from /proc/self/cgroup: v1 controller → path, and the v2 path. */
async function ownCgroups (): Promise<{ v1: Record<string, string>, v2?: string }> {
  const text = await readFile('/proc/self/cgroup', 'utf8').catch(() => '') // no /proc here: no cgroup of our own, limits read as none
  const out: { v1: Record<string, string>, v2?: string } = { v1: {} }
  for (const line of text.split('\n')) {
    const [id, ctrls, path] = line.split(':')
    if (path === undefined) continue
    if (id === '0' && ctrls === '') out.v2 = path
    else for (const c of (ctrls ?? '').split(',')) out.v1[c] = path
  }
  return out
}

/** CPUs and memory the agent's own cgroup allows (v2, else v1), never more than the machine has. */
async function cgroupLimits (): Promise<{ cpus?: number, memoryBytes?: number }> {
  const own = await ownCgroups()
  const out: { cpus?: number, memoryBytes?: number } = {}
  const v2 = join('/sys/fs/cgroup', own.v2 ?? '/')
  const cpuMax = await readFile(join(v2, 'cpu.max'), 'utf8').then(s => s.trim().split(' '), () => undefined)
  if (cpuMax !== undefined && cpuMax[0] !== 'max') out.cpus = Number(cpuMax[0]) / Number(cpuMax[1])
  const cpuDir = join('/sys/fs/cgroup/cpu', own.v1.cpu ?? '/')
  const quota = await num(join(cpuDir, 'cpu.cfs_quota_us'))
  const period = await num(join(cpuDir, 'cpu.cfs_period_us'))
  if (out.cpus === undefined && quota !== undefined && quota > 0 && period !== undefined) out.cpus = quota / period
  const mem = await num(join(v2, 'memory.max')) ?? await num(join('/sys/fs/cgroup/memory', own.v1.memory ?? '/', 'memory.limit_in_bytes'))
  if (mem !== undefined && mem < 2 ** 62) out.memoryBytes = mem
  return out
}

export async function nodeResources (opts: DiscoverOptions = {}): Promise<NodeResources> {
  const lim = await cgroupLimits()
  const gpus = await discoverGpus(opts)
  return {
    cpus: Math.min(availableParallelism(), lim.cpus ?? Infinity),
    memoryBytes: Math.min(totalmem(), lim.memoryBytes ?? Infinity),
    gpus: gpus.map(g => ({ vendor: g.vendor, model: g.model, memoryBytes: g.memoryBytes, index: g.index }))
  }
}
