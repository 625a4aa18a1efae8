// The placement core: pure functions over node capacities and existing
// allocations, no I/O. Feasibility (free CPU, memory, GPUs matching vendor/
// model/memory, label selectors, what the node's config allows: host
// networking, gaming devices), then a score: binpack prefers the node
// that ends up fullest (Nomad's default, leaves whole nodes free for big
// capsules), spread the emptiest. Replicas of one capsule avoid sharing a
// node when another fits. An infeasible demand gets a reason a person can act on.

export interface NodeGpu { vendor: string, model: string, memoryBytes: number, index: number }

export interface NodeCapacity {
  id: string
  cpus: number
  memoryBytes: number
  gpus: NodeGpu[]
  labels: Record<string, string>
  /** The node's `[capsules] allow_host_network` (absent: not allowed). */
  allowHostNetwork?: boolean
  /** The node's `[capsules] allow_gaming` (absent: not allowed). */
  allowGaming?: boolean
}

export interface Demand {
  /** The capsule this instance belongs to (replicas of one capsule spread). */
  capsule: string
  cpu: number
  memoryBytes: number
  gpus: { count: number, vendor?: string | undefined, model?: string | undefined, minMemoryBytes?: number | undefined }
  on: Record<string, string>
  strategy: 'binpack' | 'spread'
  /** Shares the node's network stack: only nodes that allow it. */
  hostNetwork?: boolean
  /** Gets the node's input and sound devices: only nodes that allow it. */
  gaming?: boolean
}

export interface Allocation {
  node: string
  capsule: string
  cpu: number
  memoryBytes: number
  gpuIndexes: number[]
}

export type PlaceResult = { ok: true, node: string, gpuIndexes: number[] } | { ok: false, reason: string }

interface NodeUse { cpu: number, mem: number, gpus: Set<number>, capsules: Map<string, number> }

/** Tracks what is left on each node while a batch of placements is decided. */
export class CapacityView {
  private readonly nodes: NodeCapacity[]
  private readonly use = new Map<string, NodeUse>()

  constructor (nodes: NodeCapacity[], allocations: Allocation[] = []) {
    this.nodes = [...nodes].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
    for (const n of this.nodes) this.use.set(n.id, { cpu: 0, mem: 0, gpus: new Set(), capsules: new Map() })
    for (const a of allocations) this.commit(a)
  }

  commit (a: Allocation): void {
    const u = this.use.get(a.node)
    if (u === undefined) return // a node that left: its allocations no longer count
    u.cpu += a.cpu
    u.mem += a.memoryBytes
    for (const g of a.gpuIndexes) u.gpus.add(g)
    u.capsules.set(a.capsule, (u.capsules.get(a.capsule) ?? 0) + 1)
  }

  place (d: Demand): PlaceResult {
    let best: { node: NodeCapacity, gpus: number[], score: number } | undefined
    let permitted = 0
    let matchedSelectors = 0
    let bestCpuFree = 0
    let bestMemFree = 0
    let gpuShort = 0
    const on = Object.entries(d.on)
    for (const n of this.nodes) {
      if (on.length > 0 && !entriesMatch(n.labels, on)) continue
      matchedSelectors++
      if (!allows(n, d)) continue
      permitted++
      const u = this.use.get(n.id) as NodeUse
      const cpuFree = n.cpus - u.cpu
      const memFree = n.memoryBytes - u.mem
      bestCpuFree = Math.max(bestCpuFree, cpuFree)
      bestMemFree = Math.max(bestMemFree, memFree)
      if (cpuFree + 1e-9 < d.cpu || memFree < d.memoryBytes) continue
      let gpus: number[] = []
      if (d.gpus.count > 0) {
        gpus = n.gpus.filter(g => !u.gpus.has(g.index) && gpuMatches(g, d.gpus)).slice(0, d.gpus.count).map(g => g.index)
        if (gpus.length < d.gpus.count) { gpuShort++; continue }
      }
      const cpuFrac = n.cpus > 0 ? (u.cpu + d.cpu) / n.cpus : 1
      const memFrac = n.memoryBytes > 0 ? (u.mem + d.memoryBytes) / n.memoryBytes : 1
      const fill = (cpuFrac + memFrac) / 2
      const sameCapsule = u.capsules.get(d.capsule) ?? 0
      // Replicas of one capsule first of all avoid each other, then the strategy decides.
      const score = -sameCapsule * 10 + (d.strategy === 'binpack' ? fill : 1 - fill)
      if (best === undefined || score > best.score) best = { node: n, gpus, score }
    }
    if (best === undefined) {
      return { ok: false, reason: infeasibleReason(d, this.nodes.length, permitted, matchedSelectors, bestCpuFree, bestMemFree, gpuShort) }
    }
    const alloc: Allocation = { node: best.node.id, capsule: d.capsule, cpu: d.cpu, memoryBytes: d.memoryBytes, gpuIndexes: best.gpus }
    this.commit(alloc)
    return { ok: true, node: best.node.id, gpuIndexes: best.gpus }
  }

  nodesUsed (): number {
    let n = 0
    for (const u of this.use.values()) if (u.capsules.size > 0) n++
    return n
  }
}

export function selectorsMatch (labels: Record<string, string>, on: Record<string, string>): boolean {
  return entriesMatch(labels, Object.entries(on))
}

function entriesMatch (labels: Record<string, string>, on: Array<[string, string]>): boolean {
  for (const [k, v] of on) if (labels[k] !== v) return false
  return true
}

/** Whether the node's config lets this demand run there (host network, gaming devices). */
function allows (n: NodeCapacity, d: Demand): boolean {
  if (d.hostNetwork === true && n.allowHostNetwork !== true) return false
  if (d.gaming === true && n.allowGaming !== true) return false
  return true
}

function gpuMatches (g: NodeGpu, want: Demand['gpus']): boolean {
  if (want.vendor !== undefined && g.vendor.toLowerCase() !== want.vendor) return false
  if (want.model !== undefined && !g.model.toLowerCase().includes(want.model.toLowerCase())) return false
  if (want.minMemoryBytes !== undefined && g.memoryBytes < want.minMemoryBytes) return false
  return true
}

function fmtBytes (n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)}G`
  return `${Math.round(n / 1024 ** 2)}M`
}

function infeasibleReason (d: Demand, nodes: number, permitted: number, matched: number, cpuFree: number, memFree: number, gpuShort: number): string {
  if (nodes === 0) return 'no alive node to run on'
  if (matched === 0) return `no node has labels ${Object.entries(d.on).map(([k, v]) => `${k}=${v}`).join(',')}`
  if (permitted === 0) {
    const want = [d.hostNetwork === true ? 'host networking' : '', d.gaming === true ? 'gaming capsules' : ''].filter(Boolean).join(' and ')
    const keys = [d.hostNetwork === true ? 'allow_host_network' : '', d.gaming === true ? 'allow_gaming' : ''].filter(Boolean).map(k => `[capsules] ${k}`).join(' and ')
    return `no node allows ${want} (set ${keys})`
  }
  if (cpuFree + 1e-9 < d.cpu) return `no node has ${d.cpu} CPUs free (most free: ${Math.max(0, cpuFree).toFixed(2)})`
  if (memFree < d.memoryBytes) return `no node has ${fmtBytes(d.memoryBytes)} memory free (most free: ${fmtBytes(Math.max(0, memFree))})`
  if (gpuShort > 0 || d.gpus.count > 0) {
    const what = [d.gpus.vendor, d.gpus.model].filter(Boolean).join(' ')
    return `no node has ${d.gpus.count} ${what === '' ? '' : what + ' '}GPU${d.gpus.count > 1 ? 's' : ''} free${d.gpus.minMemoryBytes !== undefined ? ` with ${fmtBytes(d.gpus.minMemoryBytes)}` : ''}`
  }
  return 'no node fits'
}

/** First-fit-decreasing on CPU and memory: the baseline that schedule-10k compares nodes used against. */
export function firstFitDecreasing (nodes: NodeCapacity[], demands: Array<{ cpu: number, memoryBytes: number }>): number {
  const sorted = [...demands].sort((a, b) => (b.cpu / 64 + b.memoryBytes / 2 ** 38) - (a.cpu / 64 + a.memoryBytes / 2 ** 38))
  const free = [...nodes].sort((a, b) => a.id < b.id ? -1 : 1).map(n => ({ cpu: n.cpus, mem: n.memoryBytes, used: false }))
  for (const d of sorted) {
    const slot = free.find(f => f.cpu + 1e-9 >= d.cpu && f.mem >= d.memoryBytes)
    if (slot === undefined) continue
    slot.cpu -= d.cpu
    slot.mem -= d.memoryBytes
    slot.used = true
  }
  return free.filter(f => f.used).length
}
