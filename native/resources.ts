// What this node offers the scheduler: CPUs (the cgroup quota if the agent is
// itself limited), memory (likewise), and GPUs. Goes into membership metadata.
import { availableParallelism, totalmem } from 'node:os'
import { readFile } from 'node:fs/promises'
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

/** CPUs and memory the agent's own cgroup allows (v2 root files, else v1), never more than the machine has. */
async function cgroupLimits (): Promise<{ cpus?: number, memoryBytes?: number }> {
  const out: { cpus?: number, memoryBytes?: number } = {}
  const v2 = await readFile('/sys/fs/cgroup/cpu.max', 'utf8').then(s => s.trim().split(' '), () => undefined)
  if (v2 !== undefined && v2[0] !== 'max') out.cpus = Number(v2[0]) / Number(v2[1])
  const quota = await num('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')
  const period = await num('/sys/fs/cgroup/cpu/cpu.cfs_period_us')
  if (out.cpus === undefined && quota !== undefined && quota > 0 && period !== undefined) out.cpus = quota / period
  const mem = await num('/sys/fs/cgroup/memory.max') ?? await num('/sys/fs/cgroup/memory/memory.limit_in_bytes')
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
