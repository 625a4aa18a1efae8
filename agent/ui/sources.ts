// What the dashboard reads from the agent, in one narrow interface, so the
// dashboard does not reach into the agent's parts (and tests can feed it).
import type { CapsuleHost } from '../capsule-host.js'
import type { ContentHost } from '../content-host.js'
import type { MembershipHost } from '../membership-host.js'
import type { RaftHost } from '../raft/raft-host.js'
import { AGENT_VERSION } from '../member-meta.js'
import type { SampleSource } from './ring.js'
import { runtimeNameOf } from '../supervisor/supervisor.js'

export interface MemberEventView { kind: string, id: string, name: string, state: string, time: number }

export interface UiSources {
  dataDir: string
  /** Aborts when the agent stops. */
  signal: AbortSignal
  version: string
  status: () => unknown
  /** The capsule table (`ps`): one row a capsule instance. */
  capsules: () => Array<{ state: string }>
  raft: () => unknown
  onMember: (cb: (e: MemberEventView) => void) => void
  /** Called after every committed command, with its op. */
  onApply: (cb: (op: string) => void) => void
  sample: SampleSource
  /** CPU and memory of an instance that runs on this node; where it runs otherwise. */
  instanceStats: (instance: string) => Promise<InstanceStats | undefined>
}

export interface InstanceStats {
  node: string | null
  /** False when the instance is on another node (its stats are that node's to read). */
  local: boolean
  stats: { cpuNanos: number, memoryBytes: number, memoryLimitBytes: number | null, pids: number } | null
  time: number
}

/** The agent's parts the dashboard reads from. */
export interface UiParts {
  dataDir: string
  peerId: string
  signal: AbortSignal
  status: () => unknown
  capsules: Pick<CapsuleHost, 'ps' | 'runtime'>
  raft: Pick<RaftHost, 'status' | 'state'>
  membership: Pick<MembershipHost, 'addEventListener'>
  content: Pick<ContentHost, 'counters'>
}

export function uiSources (agent: UiParts): UiSources {
  return {
    dataDir: agent.dataDir,
    signal: agent.signal,
    version: AGENT_VERSION,
    status: () => agent.status(),
    capsules: () => agent.capsules.ps(),
    raft: () => {
      const s = agent.raft.status()
      return { id: s.id, term: s.term, leader: s.leader, role: s.role, commit: s.commit, applied: s.applied, lastIndex: s.lastIndex, snapshotIndex: s.snapshotIndex, voters: s.voters, learners: s.learners }
    },
    onMember: (cb) => {
      agent.membership.addEventListener('member', (evt) => {
        const e = (evt as CustomEvent<{ kind: string, member: { id: string, state: string, meta?: { name?: string } } }>).detail
        cb({ kind: e.kind, id: e.member.id, name: e.member.meta?.name ?? '', state: e.member.state, time: Date.now() })
      })
    },
    onApply: (cb) => { agent.raft.state.onApply((cmd) => { cb(cmd.op) }) },
    instanceStats: async (name) => {
      const found = agent.raft.state.capsules.instance(name)
      if (found === undefined) return undefined
      const i = found.instance
      const time = Date.now()
      if (i.node !== agent.peerId) return { node: i.node, local: false, stats: null, time }
      const rt = agent.capsules.runtime
      if (rt === undefined || i.state !== 'running') return { node: i.node, local: true, stats: null, time }
      const s = await rt.stats(runtimeNameOf(i.name, i.generation)).catch(() => null) // exited since the state said running: no figures
      return { node: i.node, local: true, stats: s === null ? null : { cpuNanos: s.cpuNanos, memoryBytes: s.memoryBytes, memoryLimitBytes: s.memoryLimitBytes, pids: s.pids }, time }
    },
    sample: {
      contentBytes: () => { const c = agent.content.counters(); return { peers: c.bytesFromPeers, registry: c.bytesFromRegistry } },
      commitIndex: () => agent.raft.status().commit,
      capsulesRunning: () => agent.raft.state.capsules.list().reduce((n, c) => n + c.instances.filter(i => i.state === 'running').length, 0)
    }
  }
}
