// Draining a node (`node drain`, and `leave` before it goes): the node is
// made ineligible, each instance running there is placed elsewhere while
// its old run keeps serving (`previous` in the instance record), and the
// old run stops once the replacement is running and healthy — or when the
// deadline releases it. These functions issue the Raft commands; the
// scheduler places, the supervisors start and stop.
import type { CapsuleTable } from '../state/capsules.js'
import type { CommandInput, CommandResult } from '../state/cluster-state.js'
import type { MemberView } from '../membership-host.js'

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

/** Makes `node` ineligible and starts moving every instance it runs; returns the instances asked to move. */
export async function startDrain (d: DrainDeps, node: string, signal?: AbortSignal): Promise<string[]> {
  const r = await d.write({ op: 'node.eligibility', id: node, eligible: false, reason: 'drained' }, signal)
  if (!r.ok) throw new Error(`cannot mark the node ineligible: ${r.reason}`)
  const moving: string[] = []
  for (const c of d.capsules().list()) {
    if (c.desired !== 'run') continue
    for (const i of c.instances) {
      if (i.node !== node || !['pending', 'pulling', 'running'].includes(i.state)) continue
      const m = await d.write({ op: 'capsule.migrate', instance: i.name, generation: i.generation }, signal)
      if (m.ok) moving.push(i.name)
    }
  }
  return moving
}

/** The deadline: every run still being left on `node` stops now, replaced or not. */
export async function releaseDrain (d: DrainDeps, node: string, signal?: AbortSignal): Promise<string[]> {
  const released: string[] = []
  for (const c of d.capsules().list()) {
    for (const i of c.instances) {
      if (i.previous?.node !== node) continue
      if ((await d.write({ op: 'capsule.release', instance: i.name }, signal)).ok) released.push(i.name)
    }
  }
  return released
}

/**
 * `leave`: drain this node, waiting (until `deadlineMs`) for the moves when
 * another alive, eligible member can take them; then release what is left.
 * The caller stops the local capsules afterwards, so nothing keeps running.
 */
export async function drainBeforeLeave (d: DrainDeps & { self: string, members: () => MemberView[] }, deadlineMs: number, signal?: AbortSignal): Promise<void> {
  await startDrain(d, d.self, signal)
  const others = (): boolean => d.members().some(m => m.id !== d.self && m.state === 'alive' && d.capsules().isEligible(m.id))
  const until = Date.now() + deadlineMs
  while (others() && drainRemaining(d.capsules(), d.self).length > 0 && Date.now() < until && signal?.aborted !== true) {
    await new Promise(resolve => setTimeout(resolve, 250))
  }
  await releaseDrain(d, d.self, signal)
}
