// Draining a node (`node drain`, and `leave` before it goes): the node is
// made ineligible, each instance running there is placed elsewhere while
// its old run keeps serving (`previous` in the instance record), and the
// old run stops once the replacement is running and healthy — or when the
// deadline releases it. The drain is a record in the Raft state that the
// leader's rollout driver finishes; these functions issue its commands, the
// scheduler places, the supervisors start and stop.
import type { CapsuleTable } from '../state/capsules.js'
import type { CommandInput, CommandResult } from '../state/cluster-state.js'
import type { MemberView } from '../membership-host.js'
import type { DrainRecord, RolloutTable } from '../state/rollouts.js'

export interface DrainDeps {
  capsules: () => CapsuleTable
  write: (cmd: CommandInput, signal?: AbortSignal) => Promise<CommandResult>
}

export class UnknownNodeError extends Error {
  override name = 'UnknownNodeError'
}

/** A member by name or peer id; one clear error when none or several match. */
export function resolveNode (members: MemberView[], node: string): MemberView {
  const m = members.filter(x => x.id === node || x.name === node)
  if (m.length === 0) throw new UnknownNodeError(`no member named ${node} (see bolt-agent status)`)
  if (m.length > 1) throw new UnknownNodeError(`${m.length} members are named ${node}: use the id (${m.map(x => x.id).join(', ')})`)
  return m[0]!
}

export interface DrainEntry { instance: string, capsule: string, state: string, health: string | null, node: string | null, leaving: boolean }

/** What still runs on `node` or moves off it: the drain is done when this is empty. */
export function drainRemaining (table: CapsuleTable, node: string): DrainEntry[] {
  const out: DrainEntry[] = []
  for (const c of table.list()) {
    if (c.desired !== 'run') continue
    for (const i of c.instances) {
      const here = i.node === node && ['pending', 'pulling', 'running'].includes(i.state)
      const leaving = i.previous?.node === node
      if (here || leaving) out.push({ instance: i.name, capsule: c.spec.name, state: i.state, health: i.health ?? null, node: i.node, leaving })
    }
  }
  return out
}

/**
 * Records a drain of `node` in the Raft state: in one command the node is
 * made ineligible and every instance it runs starts moving. The leader's
 * rollout driver finishes it (or releases what is left at `deadline`, a
 * time in ms since the epoch), whether or not the caller stays.
 */
export async function startDrain (d: DrainDeps & { rollouts: () => RolloutTable }, node: string, deadline: number, signal?: AbortSignal): Promise<DrainRecord> {
  const r = await d.write({ op: 'drain.start', node, deadline: Math.max(0, Math.round(deadline)) }, signal)
  if (!r.ok) throw new Error(`cannot start the drain: ${r.reason}`)
  const rec = d.rollouts().drain(node)
  if (rec === undefined) throw new Error('the drain was committed but this agent does not see it yet')
  return rec
}

/** The deadline now: every run still being left on `node` stops, replaced or not; returns those. */
export async function releaseDrain (d: DrainDeps & { rollouts: () => RolloutTable }, node: string, signal?: AbortSignal): Promise<string[]> {
  const r = await d.write({ op: 'drain.finish', node, release: true }, signal)
  // Not running any more: the leader finished it meanwhile, and its record says what it released.
  if (!r.ok && d.rollouts().drain(node)?.status !== 'done') throw new Error(`cannot release the drain: ${r.reason}`)
  return d.rollouts().drain(node)?.released ?? []
}

/**
 * `leave`: drain this node, waiting (until `deadlineMs`) for the moves when
 * another alive, eligible member can take them; then release what is left.
 * The caller stops the local capsules afterwards, so nothing keeps running.
 */
export async function drainBeforeLeave (d: DrainDeps & { rollouts: () => RolloutTable, self: string, members: () => MemberView[] }, deadlineMs: number, signal?: AbortSignal): Promise<void> {
  await startDrain(d, d.self, Date.now() + deadlineMs, signal)
  const others = (): boolean => d.members().some(m => m.id !== d.self && m.state === 'alive' && d.capsules().isEligible(m.id))
  const until = Date.now() + deadlineMs
  while (others() && d.rollouts().drain(d.self)?.status === 'running' && Date.now() < until && signal?.aborted !== true) {
    await new Promise(resolve => setTimeout(resolve, 250))
  }
  if (d.rollouts().drain(d.self)?.status === 'running') await releaseDrain(d, d.self, signal)
}
