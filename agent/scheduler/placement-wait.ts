// Waiting, on any agent, until the scheduler has placed a capsule's
// instances (or said why it cannot), pushed by the Raft apply of each
// command rather than polled: `bolt-agent run` asks for it in its submit
// request (POST /v1/capsules?wait=placed), so it sees the placement as soon
// as this agent applies it, in one round trip.
import type { CapsuleRecord } from '../state/capsules.js'
import { WAITING_FOR_SCHEDULER } from '../state/instance-reasons.js'

/** The longest a client may ask the agent to hold a submit open for placement. */
export const MAX_PLACEMENT_WAIT_MS = 60_000

export interface Placement {
  placed: number
  pending: Array<{ instance: string, reason: string }>
  /** True when the scheduler has looked at every unplaced instance and said why it does not fit. */
  verdict: boolean
}

/** Where a capsule's instances stand: placed, or pending with the scheduler's reason. */
export function placementOf (rec: Pick<CapsuleRecord, 'instances'>): Placement {
  const unplaced = rec.instances.filter(i => i.node === null)
  return {
    placed: rec.instances.length - unplaced.length,
    pending: unplaced.map(i => ({ instance: i.name, reason: i.reason ?? i.state })),
    verdict: unplaced.length > 0 && unplaced.every(i => i.reason !== null && i.reason !== WAITING_FOR_SCHEDULER)
  }
}

/** Whether a `run` waiting for placement is done: every instance placed, or the scheduler's verdict on every other one. */
export function placementSettled (p: Placement): boolean {
  return p.pending.length === 0 || p.verdict
}

export interface PlacementSource {
  get: (name: string) => CapsuleRecord | undefined
  /** Called after each applied command; returns the unsubscribe. */
  onApply: (l: (cmd: { op: string }) => void) => () => void
}

/**
 * Resolves with the capsule's record once its placement is settled, or as
 * it stands when `timeoutMs` passes or `signal` aborts; undefined when the
 * capsule is gone (removed meanwhile). Re-checks only when a capsule command
 * or a node's eligibility is applied, since nothing else moves a placement.
 */
export async function waitForPlacement (src: PlacementSource, name: string, timeoutMs: number, signal?: AbortSignal): Promise<CapsuleRecord | undefined> {
  const now = src.get(name)
  if (now === undefined || placementSettled(placementOf(now))) return now
  const ms = Math.min(Math.max(0, timeoutMs), MAX_PLACEMENT_WAIT_MS)
  return await new Promise(resolve => {
    let t: NodeJS.Timeout | undefined
    const done = (): void => {
      clearTimeout(t)
      off()
      signal?.removeEventListener('abort', done)
      resolve(src.get(name))
    }
    const off = src.onApply(cmd => {
      if (!cmd.op.startsWith('capsule.') && cmd.op !== 'node.eligibility') return
      const rec = src.get(name)
      if (rec === undefined || placementSettled(placementOf(rec))) done()
    })
    t = setTimeout(done, ms)
    if (signal?.aborted === true) done()
    else signal?.addEventListener('abort', done, { once: true })
  })
}

/** POST /v1/capsules?wait=placed&timeoutMs=N: the record once placed (or as it stands at N ms), with its `placement`. */
export async function submitAnswer (src: PlacementSource, name: string, query: URLSearchParams, signal?: AbortSignal): Promise<(CapsuleRecord & { placement: Placement }) | undefined> {
  const rec = await waitForPlacement(src, name, Number(query.get('timeoutMs') ?? 0) || 0, signal)
  return rec === undefined ? undefined : { ...rec, placement: placementOf(rec) }
}
