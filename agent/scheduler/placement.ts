// The placement core: pure functions over node capacities and existing
// allocations, no I/O. Feasibility (free CPU, memory, GPUs matching vendor/
// model/memory, label selectors, what the node's config allows: host
// networking, gaming devices), then a score: binpack prefers the node
// that ends up fullest (Nomad's default, leaves whole nodes free for big
// capsules), spread the emptiest. Replicas of one capsule avoid sharing a
// node when another fits. Host ports are a resource too: a node never gets
// two instances on one host port and protocol, and a dynamic port comes from
// the node's announced range. An infeasible demand gets a reason a person can act on.

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
  /** Dynamic host ports are taken from [low, high]; absent: DEFAULT_PORT_RANGE. */
  portRange?: readonly [number, number] | undefined
}

export const DEFAULT_PORT_RANGE: readonly [number, number] = [20000, 32767]

export interface PortDemand { host?: number | undefined, container: number, proto: 'tcp' | 'udp' }
export interface PlacedPort { host: number, container: number, proto: 'tcp' | 'udp' }

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
  /** Host ports: a fixed `host` must be free on the node; without one, a free port of its range is picked. */
  ports?: PortDemand[]
}

export interface Allocation {
  node: string
  capsule: string
  cpu: number
  memoryBytes: number
  gpuIndexes: number[]
  ports?: ReadonlyArray<{ host: number, proto: 'tcp' | 'udp' }>
}

export type PlaceResult = { ok: true, node: string, gpuIndexes: number[], ports: PlacedPort[] } | { ok: false, reason: string }

interface NodeUse { cpu: number, mem: number, gpus: Set<number>, capsules: Map<string, number>, ports: Set<string> }

const portKey = (port: number, proto: string): string => `${port}/${proto}`

/** Host ports for `want` on a node whose taken ports are `taken`, or the first static port that is taken. */
export function pickPorts (want: readonly PortDemand[], taken: ReadonlySet<string>, range: readonly [number, number]): { ok: true, ports: PlacedPort[] } | { ok: false, taken?: string, exhausted?: string } {
  const mine = new Set<string>()
  const out: PlacedPort[] = []
  for (const p of want) {
    if (p.host === undefined) continue
    const k = portKey(p.host, p.proto)
    if (taken.has(k) || mine.has(k)) return { ok: false, taken: k }
    mine.add(k)
  }
  for (const p of want) {
    let host = p.host
    if (host === undefined) {
      for (let c = range[0]; c <= range[1]; c++) {
        const k = portKey(c, p.proto)
        if (!taken.has(k) && !mine.has(k)) { host = c; break }
      }
      if (host === undefined) return { ok: false, exhausted: `${range[0]}-${range[1]}/${p.proto}` }
      mine.add(portKey(host, p.proto))
    }
    out.push({ host, container: p.container, proto: p.proto })
  }
  return { ok: true, ports: out }
}

/** Tracks what is left on each node while a batch of placements is decided. */
export class CapacityView {
  private readonly nodes: NodeCapacity[]
  private readonly use = new Map<string, NodeUse>()

  constructor (nodes: NodeCapacity[], allocations: Allocation[] = []) {
    this.nodes = [...nodes].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
    for (const n of this.nodes) this.use.set(n.id, { cpu: 0, mem: 0, gpus: new Set(), capsules: new Map(), ports: new Set() })
    for (const a of allocations) this.commit(a)
  }

  commit (a: Allocation): void {
    const u = this.use.get(a.node)
    if (u === undefined) return // a node that left: its allocations no longer count
    u.cpu += a.cpu
    u.mem += a.memoryBytes
    for (const g of a.gpuIndexes) u.gpus.add(g)
    for (const p of a.ports ?? []) u.ports.add(portKey(p.host, p.proto))
    u.capsules.set(a.capsule, (u.capsules.get(a.capsule) ?? 0) + 1)
  }

  place (d: Demand): PlaceResult {
    let best: { node: NodeCapacity, gpus: number[], score: number, ports: PlacedPort[] } | undefined
    let permitted = 0
    let matchedSelectors = 0
    let bestCpuFree = 0
    let bestMemFree = 0
    let gpuShort = 0
    let portTaken: string | undefined
    let portsExhausted: string | undefined
    let otherwiseFit = 0
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
      otherwiseFit++
      let ports: PlacedPort[] = []
      if (d.ports !== undefined && d.ports.length > 0) {
        const picked = pickPorts(d.ports, u.ports, n.portRange ?? DEFAULT_PORT_RANGE)
        if (!picked.ok) { portTaken ??= picked.taken; portsExhausted ??= picked.exhausted; continue }
        ports = picked.ports
      }
      const cpuFrac = n.cpus > 0 ? (u.cpu + d.cpu) / n.cpus : 1
      const memFrac = n.memoryBytes > 0 ? (u.mem + d.memoryBytes) / n.memoryBytes : 1
      const fill = (cpuFrac + memFrac) / 2
      const sameCapsule = u.capsules.get(d.capsule) ?? 0
      // Replicas of one capsule first of all avoid each other, then the strategy decides.
      const score = -sameCapsule * 10 + (d.strategy === 'binpack' ? fill : 1 - fill)
      if (best === undefined || score > best.score) best = { node: n, gpus, score, ports }
    }
    if (best === undefined) {
      // Nodes that had room for everything but a port: the port is the reason.
      if (otherwiseFit > 0 && portTaken !== undefined) return { ok: false, reason: `port ${portTaken} is taken on every node${otherwiseFit < matchedSelectors ? ' with room for it' : ''}` }
      if (otherwiseFit > 0 && portsExhausted !== undefined) return { ok: false, reason: `no free host port in ${portsExhausted} on any node` }
      return { ok: false, reason: infeasibleReason(d, this.nodes.length, permitted, matchedSelectors, bestCpuFree, bestMemFree, gpuShort) }
    }
    const alloc: Allocation = { node: best.node.id, capsule: d.capsule, cpu: d.cpu, memoryBytes: d.memoryBytes, gpuIndexes: best.gpus, ports: best.ports }
    this.commit(alloc)
    return { ok: true, node: best.node.id, gpuIndexes: best.gpus, ports: best.ports }
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
