// Repair of S3 objects after a member dies: every agent notes when it first
// saw each member dead (or gone from the member list); on the Raft leader,
// an object one of whose holders has been dead for the grace period, and
// that has fewer live copies than its bucket asks (1 + replicas, at most one
// per live member), is fetched from the survivors onto the leader and copied
// to more peers, then its holders are committed (`s3.object.holders`, which
// applies only while the key still names that object). Bounded per pass.
import type { CommandInput, CommandResult } from '../state/cluster-state.js'
import type { FetchedObject, ObjectStore } from '../../p2p/content/objects.js'
import type { S3Log } from './deps.js'
import type { S3Table } from './s3-state.js'

/** How often the leader looks for objects to repair. */
export const REPAIR_INTERVAL_MS = 2_000
/** Objects repaired in one pass at most (the next pass takes the rest). */
export const MAX_REPAIRS_PER_PASS = 16

export interface S3RepairDeps {
  self: string
  isLeader: () => boolean
  /** Every member with its SWIM state (this node included). */
  members: () => ReadonlyArray<{ id: string, state: string }>
  table: () => S3Table
  objects: ObjectStore
  fetchObject: (id: string, holders: string[], signal: AbortSignal) => Promise<FetchedObject>
  write: (cmd: CommandInput, signal: AbortSignal) => Promise<CommandResult>
  graceMs: number
  log: S3Log
}

export interface ObjectCopies { bucket: string, key: string, id: string, holders: string[], live: number, target: number }

export class S3Repair {
  private readonly deadSince = new Map<string, number>()
  private timer: ReturnType<typeof setInterval> | undefined
  private running: Promise<void> | undefined
  private readonly ac = new AbortController()
  /** Objects given new copies since start (for tests and metrics). */
  repaired = 0

  constructor (private readonly d: S3RepairDeps) {}

  start (): void {
    this.timer = setInterval(() => { if (this.running === undefined) this.running = this.pass().catch((err: Error) => { this.d.log.warn({ err: err.message }, 's3: a repair pass failed; the next one tries again') }).finally(() => { this.running = undefined }) }, REPAIR_INTERVAL_MS)
  }

  async stop (): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.ac.abort()
    await this.running
  }

  private alive (): Set<string> {
    return new Set(this.d.members().filter(m => m.state === 'alive' || m.state === 'suspect').map(m => m.id).concat(this.d.self))
  }

  /** Every object and its live copies against its target; `below` only those short of it. */
  copies (): { objects: number, below: ObjectCopies[] } {
    const alive = this.alive()
    const below: ObjectCopies[] = []
    let objects = 0
    for (const { bucket, key, record, replicas } of this.d.table().allObjects()) {
      objects++
      const live = record.holders.filter(h => alive.has(h)).length
      const target = Math.min(replicas + 1, alive.size)
      if (live < target) below.push({ bucket, key, id: record.id, holders: record.holders, live, target })
    }
    return { objects, below }
  }

  /** One pass: note deaths; on the leader, repair what waited out the grace period. */
  async pass (now = Date.now()): Promise<void> {
    const known = new Set<string>()
    for (const m of this.d.members()) {
      known.add(m.id)
      if (m.state === 'dead' || m.state === 'left') { if (!this.deadSince.has(m.id)) this.deadSince.set(m.id, now) } else this.deadSince.delete(m.id)
    }
    if (!this.d.isLeader()) return
    const lostLongEnough = (h: string): boolean => {
      if (h === this.d.self) return false
      if (!known.has(h) && !this.deadSince.has(h)) this.deadSince.set(h, now)
      const since = this.deadSince.get(h)
      return since !== undefined && now - since >= this.d.graceMs
    }
    let done = 0
    for (const o of this.copies().below) {
      if (done >= MAX_REPAIRS_PER_PASS || this.ac.signal.aborted) break
      if (!o.holders.some(lostLongEnough)) continue
      done++
      try {
        await this.repair(o)
      } catch (err) {
        this.d.log.warn({ bucket: o.bucket, key: o.key.slice(0, 200), id: o.id, err: (err as Error).message }, 's3 repair: could not restore the object\'s copies; next pass retries')
      }
    }
  }

  private async repair (o: ObjectCopies): Promise<void> {
    const alive = this.alive()
    const live = o.holders.filter(h => alive.has(h))
    const signal = AbortSignal.any([this.ac.signal, AbortSignal.timeout(10 * 60_000)])
    // The leader takes a copy from the survivors (verified chunk by chunk), then asks peers for the rest.
    await this.d.fetchObject(o.id, live, signal)
    const holders = [...new Set([...live, this.d.self])]
    if (holders.length < o.target) {
      const more = await this.d.objects.addReplicas(o.id, o.target - holders.length, holders, signal)
      holders.push(...more.replicas)
    }
    const r = await this.d.write({ op: 's3.object.holders', bucket: o.bucket, key: o.key, id: o.id, holders: holders.slice(0, 16) }, signal)
    if (r.ok) {
      this.repaired++
      this.d.log.info({ bucket: o.bucket, key: o.key.slice(0, 200), id: o.id, copies: holders.length, target: o.target }, 's3 repair: copies restored')
    }
  }
}
