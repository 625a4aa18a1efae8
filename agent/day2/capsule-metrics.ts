// Prometheus gauges of capsules and the scheduler, read from the committed
// state when /metrics is scraped: instances by state and node, pending
// instances by reason, restarts, and the placements this node's scheduler
// committed. Every agent serves the same cluster view; placements are its own.
import type { CapsuleTable } from '../state/capsules.js'

type Extra = { name: string, help: string, labels?: string[], read: () => Array<{ labels?: Record<string, string>, value: number }> }

/** Distinct pending reasons reported, at most (a label's values must stay few). */
const MAX_REASONS = 32

export function capsuleMetrics (table: () => CapsuleTable, placements: () => number): Extra[] {
  const count = (key: (i: { state: string, node: string | null, reason: string | null }) => string | undefined): Map<string, number> => {
    const m = new Map<string, number>()
    for (const c of table().list()) {
      for (const i of c.instances) {
        const k = key(i)
        if (k !== undefined) m.set(k, (m.get(k) ?? 0) + 1)
      }
    }
    return m
  }
  return [
    {
      name: 'bolt_capsule_instances',
      help: 'Capsule instances by state and by the node they are placed on ("none": unplaced)',
      labels: ['state', 'node'],
      read: () => [...count(i => `${i.state}\u0000${i.node ?? 'none'}`)].map(([k, value]) => { const [state, node] = k.split('\u0000') as [string, string]; return { labels: { state, node }, value } })
    },
    {
      name: 'bolt_capsule_pending',
      help: 'Unplaced instances by the reason the scheduler gave',
      labels: ['reason'],
      read: () => [...count(i => i.node === null && (i.state === 'pending' || i.state === 'lost') ? (i.reason ?? 'none').replace(/\d+(\.\d+)?[KMGT]?/g, 'N').slice(0, 120) : undefined)].slice(0, MAX_REASONS).map(([reason, value]) => ({ labels: { reason }, value }))
    },
    {
      name: 'bolt_capsule_restarts',
      help: 'Restarts of capsule instances by their node, as last reported',
      labels: ['node'],
      read: () => {
        const m = new Map<string, number>()
        for (const c of table().list()) for (const i of c.instances) if (i.node !== null) m.set(i.node, (m.get(i.node) ?? 0) + i.restarts)
        return [...m].map(([node, value]) => ({ labels: { node }, value }))
      }
    },
    { name: 'bolt_scheduler_placements_total', help: 'Placements committed by this node\'s scheduler (while it led)', read: () => [{ value: placements() }] }
  ]
}

/** Raft's position on this node: term, commit and applied index (the commit latency is bolt_raft_commit_seconds). */
export function raftPositionMetrics (status: () => { term: number, commit: number, applied: number }): Extra[] {
  return [
    { name: 'bolt_raft_term', help: 'The Raft term this node is in', read: () => [{ value: status().term }] },
    { name: 'bolt_raft_commit_index', help: 'The highest log index this node knows committed', read: () => [{ value: status().commit }] },
    { name: 'bolt_raft_applied_index', help: 'The highest log index this node has applied to its state', read: () => [{ value: status().applied }] }
  ]
}
