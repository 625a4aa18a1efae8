// What the dashboard reads from the agent, in one narrow interface, so the
// dashboard does not reach into the agent's parts (and tests can feed it).
import type { CapsuleHost } from '../capsule-host.js'
import type { AgentContext } from '../components.js'
import type { ContentHost } from '../content-host.js'
import type { MembershipHost } from '../membership-host.js'
import type { RaftHost } from '../raft/raft-host.js'
import { AGENT_VERSION } from '../member-meta.js'
import type { SampleSource } from './ring.js'
import { runtimeNameOf } from '../supervisor/supervisor.js'
import type { PullView } from '../pulls-in-progress.js'
import { fetchStats, statsHandler, STATS_PROTOCOL, STATS_TIMEOUT_MS, type InstanceFigures } from './stats-protocol.js'

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
  /** CPU and memory of an instance, read on the node that runs it (asked over `/bolt/stats/1` when that is another). */
  instanceStats: (instance: string) => Promise<InstanceStats | undefined>
  /** Image pulls running on this node, API- and capsule-started. */
  pulls: () => PullView[]
  onPulls: (cb: () => void) => void
  /** Serves what other members' dashboards ask of this node (`/bolt/stats/1`) until `signal` aborts. */
  serve?: () => Promise<void>
}

export interface InstanceStats {
  node: string | null
  /** Whether the instance runs on this node. */
  local: boolean
  stats: InstanceFigures | null
  /** When the figures were read, on the clock of the node that read them (rates divide by its differences). */
  time: number
  /** Why there are no figures from the node that runs it (unreachable, an older agent). */
  error?: string
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
  content: Pick<ContentHost, 'counters' | 'pulls'>
}

/** Streams to and from members, as every cluster protocol has them (admission in front). */
export type UiCluster = Pick<AgentContext, 'libp2p' | 'admission' | 'openControl'>

export function uiSources (agent: UiParts, cluster?: UiCluster): UiSources {
  /** Figures of an instance on this node; null when it is not running. */
  const localFigures = async (name: string, mustBeHere: boolean): Promise<InstanceFigures | null> => {
    const found = agent.raft.state.capsules.instance(name)
    if (found === undefined || found.instance.node !== agent.peerId) {
      if (mustBeHere) throw new Error(`${name} does not run on this node`)
      return null
    }
    const i = found.instance
    const rt = agent.capsules.runtime
    if (rt === undefined || i.state !== 'running') return null
    const s = await rt.stats(runtimeNameOf(i.name, i.generation)).catch(() => null) // exited since the state said running: no figures
    return s === null ? null : { cpuNanos: s.cpuNanos, memoryBytes: s.memoryBytes, memoryLimitBytes: s.memoryLimitBytes, pids: s.pids }
  }
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
      const node = found.instance.node
      if (node === agent.peerId) return { node, local: true, stats: await localFigures(name, false), time: Date.now() }
      if (node === null || found.instance.state !== 'running') return { node, local: false, stats: null, time: Date.now() }
      if (cluster === undefined) return { node, local: false, stats: null, time: Date.now(), error: 'this agent cannot reach other members' }
      try {
        const signal = AbortSignal.any([agent.signal, AbortSignal.timeout(STATS_TIMEOUT_MS)])
        const r = await fetchStats(await cluster.openControl(node, STATS_PROTOCOL, signal), name, signal)
        return { node, local: false, stats: r.stats, time: r.time }
      } catch (err) {
        return { node, local: false, stats: null, time: Date.now(), error: `no figures from the node that runs it: ${(err as Error).message}` }
      }
    },
    pulls: () => agent.content.pulls.list(),
    onPulls: (cb) => { agent.content.pulls.onChange(cb) },
    ...(cluster !== undefined
      ? {
          serve: async () => {
            await cluster.libp2p.handle(STATS_PROTOCOL, cluster.admission.guard(statsHandler(async (name) => await localFigures(name, true))), { maxInboundStreams: 16 })
            agent.signal.addEventListener('abort', () => { void cluster.libp2p.unhandle(STATS_PROTOCOL).catch(() => {}) }, { once: true }) // best-effort on stop: libp2p is stopping too
          }
        }
      : {}),
    sample: {
      contentBytes: () => { const c = agent.content.counters(); return { peers: c.bytesFromPeers, registry: c.bytesFromRegistry } },
      commitIndex: () => agent.raft.status().commit,
      capsulesRunning: () => agent.raft.state.capsules.list().reduce((n, c) => n + c.instances.filter(i => i.state === 'running').length, 0)
    }
  }
}
