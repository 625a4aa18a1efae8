// schedule-10k: the scheduler core places 10,000 capsules on 1,000 simulated
// nodes in one process; figures: placements/s (goal >= 10,000/s) and nodes
// used as a ratio to a first-fit-decreasing baseline computed in the same run.
import { CapacityView, firstFitDecreasing, type Demand, type NodeCapacity } from '../agent/scheduler/placement.js'
import type { Scenario } from './report.js'

function seeded (seed: number): () => number {
  let s = seed >>> 0
  return () => { s = (s + 0x6D2B79F5) >>> 0; let x = s; x = Math.imul(x ^ (x >>> 15), x | 1); x ^= x + Math.imul(x ^ (x >>> 7), x | 61); return ((x ^ (x >>> 14)) >>> 0) / 4294967296 }
}

export const scenario: Scenario = {
  name: 'schedule-10k',
  description: 'scheduler core: 10,000 capsules on 1,000 simulated nodes; placements/s and nodes used vs first-fit-decreasing',
  async run ({ quick }) {
    const nNodes = quick ? 200 : 1000
    const nCaps = quick ? 2000 : 10_000
    const rnd = seeded(42)
    const G = 1024 ** 3
    const nodes: NodeCapacity[] = Array.from({ length: nNodes }, (_, i) => ({ id: `node-${String(i).padStart(4, '0')}`, cpus: [8, 16, 32, 64][Math.floor(rnd() * 4)]!, memoryBytes: [16, 32, 64, 128][Math.floor(rnd() * 4)]! * G, gpus: [], labels: { zone: rnd() < 0.5 ? 'eu' : 'us' } }))
    const demands: Demand[] = Array.from({ length: nCaps }, (_, i) => ({ capsule: `c${i}`, cpu: [0.25, 0.5, 1, 2, 4][Math.floor(rnd() * 5)]!, memoryBytes: [256, 512, 1024, 2048, 4096][Math.floor(rnd() * 5)]! * 1024 ** 2, gpus: { count: 0 }, on: {}, strategy: 'binpack' }))
    const start = performance.now()
    const view = new CapacityView(nodes)
    let placed = 0
    for (const d of demands) if (view.place(d).ok) placed++
    const secs = (performance.now() - start) / 1000
    const ffd = firstFitDecreasing(nodes, demands)
    const used = view.nodesUsed()
    const perSec = placed / secs
    return {
      name: 'schedule-10k',
      figures: { nodes: nNodes, capsules: nCaps, placed, placementsPerSec: perSec, nodesUsed: used, ffdNodesUsed: ffd, nodesUsedRatioToFFD: used / ffd },
      goal: 'placementsPerSec >= 10000 (nodesUsedRatioToFFD reported: lower is tighter packing)',
      met: perSec >= 10_000,
      config: { strategy: 'binpack', seed: 42 }
    }
  }
}
