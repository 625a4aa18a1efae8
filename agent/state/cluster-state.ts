// The replicated state machine of the cluster, fed by committed Raft
// entries: a small key-value store (for operators and the linearizability
// check), server/client roles, and — as later parts land — capsules,
// placements and object metadata. Commands are CBOR checked by zod; apply is
// deterministic so every replica reaches the same state. A snapshot is the
// state serialized with a sha256 checksum, checked on restore.
import { createHash } from 'node:crypto'
import { decode, encode } from 'cbor-x'
import { z } from 'zod'
import { checkCborShape } from '../../p2p/membership/cbor-guard.js'
import { CapsuleTable, type CapsuleRecord } from './capsules.js'
import { ServiceCatalog } from './services.js'
import { RolloutTable } from './rollouts.js'
import { S3Table } from '../s3/s3-state.js'
import { decodeCommand, encodeCommand, type Command } from './commands.js'

export { MAX_KEY_BYTES, MAX_VALUE_BYTES, type Command, type CommandInput } from './commands.js'

/** Results kept for proposers to pick up after their entry applies. */
const MAX_RESULTS = 4096
/** Request ids remembered for de-duplicating retried commands. */
const MAX_SEEN = 16_384

/** Called after each applied command, so watchers (supervisor, scheduler) can react. */
export type ApplyListener = (cmd: Command, result: CommandResult) => void

export type CommandResult =
  | { ok: true, value?: string | null }
  | { ok: false, reason: string, current?: string | null }

export class SnapshotCorruptError extends Error {
  override name = 'SnapshotCorruptError'
}

const SnapshotSchema = z.object({
  v: z.literal(1),
  kv: z.array(z.tuple([z.string(), z.string()])),
  roles: z.array(z.tuple([z.string(), z.enum(['server', 'client'])])),
  capsules: z.array(z.unknown()).default([]),
  catalog: z.array(z.unknown()).default([]),
  seen: z.array(z.tuple([z.string(), z.unknown()])).default([]),
  s3: z.unknown().optional(),
  /** Nodes made ineligible for new placements (`node eligibility`, `node drain`): [id, reason]. */
  ineligible: z.array(z.tuple([z.string(), z.string()])).default([]),
  /** Rollouts and drains the leader drives (absent in snapshots from before them). */
  rollouts: z.object({ deployments: z.array(z.unknown()), drains: z.array(z.unknown()) }).optional()
})

export interface ClusterStateInit {
  /** Told of each committed entry that apply skipped (malformed, unknown, or a failing command). */
  onSkip?: (index: number, err: Error) => void
}

export class ClusterState {
  private kv = new Map<string, string>()
  private roles = new Map<string, 'server' | 'client'>()
  private readonly results = new Map<string, CommandResult>()
  /**
   * Results of recent commands by request id. A client that timed out retries
   * with the same id; if the first attempt did commit, the retry must get the
   * first result and change nothing (a cas must not apply twice).
   */
  private readonly seen = new Map<string, CommandResult>()
  readonly capsules = new CapsuleTable()
  readonly catalog = new ServiceCatalog()
  readonly s3 = new S3Table()
  readonly rollouts = new RolloutTable(this.capsules)
  private readonly listeners = new Set<ApplyListener>()
  appliedIndex = 0

  constructor (private readonly init: ClusterStateInit = {}) {}

  get (key: string): string | undefined { return this.kv.get(key) }

  /** Keys under `prefix`, sorted, at most `limit` (a read of this replica's state). */
  keys (prefix: string, limit = 10_000): string[] {
    const out: string[] = []
    for (const k of this.kv.keys()) {
      if (!k.startsWith(prefix)) continue
      out.push(k)
      if (out.length >= limit) break
    }
    return out.sort()
  }
  roleOf (id: string): 'server' | 'client' | undefined { return this.roles.get(id) }
  allRoles (): Array<[string, 'server' | 'client']> { return [...this.roles] }

  onApply (l: ApplyListener): () => void {
    this.listeners.add(l)
    return () => { this.listeners.delete(l) }
  }

  /** Takes the result of a command this node proposed, once. */
  takeResult (req: string): CommandResult | undefined {
    const r = this.results.get(req)
    this.results.delete(req)
    return r
  }

  static encode (cmd: Command): Uint8Array { return encodeCommand(cmd) }

  /**
   * Applies one committed entry's data. Never throws: an entry that does not
   * decode to a registered command (or whose command fails) is skipped with
   * its reason reported through onSkip, so one bad entry in the log can
   * neither stop nor stall the replica — at every restart it is replayed.
   */
  apply (index: number, data: Uint8Array): CommandResult {
    this.appliedIndex = index
    if (data.byteLength === 0) return { ok: true } // leader's empty entry of a new term
    let cmd: Command
    try {
      cmd = decodeCommand(data)
    } catch (err) {
      this.init.onSkip?.(index, err as Error)
      return { ok: false, reason: 'undecodable command' }
    }
    try {
      return this.applyCommand(cmd)
    } catch (err) {
      this.init.onSkip?.(index, err as Error)
      return { ok: false, reason: `command failed: ${(err as Error).message}` }
    }
  }

  private applyCommand (cmd: Command): CommandResult {
    const earlier = this.seen.get(cmd.req)
    if (earlier !== undefined) {
      this.results.set(cmd.req, earlier)
      return earlier
    }
    const result = this.run(cmd)
    this.results.set(cmd.req, result)
    this.seen.set(cmd.req, result)
    if (this.seen.size > MAX_SEEN) {
      const oldest = this.seen.keys().next().value
      if (oldest !== undefined) this.seen.delete(oldest)
    }
    for (const l of this.listeners) {
      try { l(cmd, result) } catch { /* a watcher's failure must not break apply */ }
    }
    if (this.results.size > MAX_RESULTS) {
      const oldest = this.results.keys().next().value
      if (oldest !== undefined) this.results.delete(oldest)
    }
    return result
  }

  private run (cmd: Command): CommandResult {
    switch (cmd.op) {
      case 'put': this.kv.set(cmd.key, cmd.value); return { ok: true }
      case 'delete': this.kv.delete(cmd.key); return { ok: true }
      case 'cas': {
        const cur = this.kv.get(cmd.key) ?? null
        if (cur !== cmd.old) return { ok: false, reason: 'mismatch', current: cur }
        this.kv.set(cmd.key, cmd.value)
        return { ok: true }
      }
      case 'role': this.roles.set(cmd.id, cmd.role); return { ok: true }
      case 'noop': return { ok: true }
      case 'catalog.update': return this.catalog.apply(cmd)
      case 's3.key.put': case 's3.key.delete': case 's3.bucket.create': case 's3.bucket.delete': case 's3.object.put':
      case 's3.object.delete': case 's3.upload.create': case 's3.upload.part': case 's3.upload.complete': case 's3.upload.abort': case 's3.object.holders':
        return this.s3.apply(cmd)
      case 'deployment.start': case 'deployment.step': case 'deployment.replaced': case 'deployment.finish': case 'drain.start': case 'drain.finish':
        return this.rollouts.apply(cmd)
      case 'capsule.remove': {
        const r = this.capsules.apply(cmd)
        if (r.ok) this.rollouts.forget(cmd.name)
        return r
      }
      default: return this.capsules.apply(cmd)
    }
  }

  snapshot (): Uint8Array {
    const body = encode({ v: 1, kv: [...this.kv].sort((a, b) => a[0] < b[0] ? -1 : 1), roles: [...this.roles].sort((a, b) => a[0] < b[0] ? -1 : 1), capsules: this.capsules.toSnapshot(), catalog: this.catalog.toSnapshot(), seen: [...this.seen], s3: this.s3.toSnapshot(), ineligible: this.capsules.ineligibleNodes(), rollouts: this.rollouts.toSnapshot() }) as Uint8Array
    const sum = createHash('sha256').update(body).digest()
    return Buffer.concat([sum, body])
  }

  restore (data: Uint8Array): void {
    if (data.byteLength === 0) { this.kv = new Map(); this.roles = new Map(); this.capsules.restore([]); this.capsules.restoreIneligible([]); this.rollouts.restore(undefined); this.catalog.restore([]); this.s3.restore(undefined); this.seen.clear(); return }
    if (data.byteLength < 32) throw new SnapshotCorruptError('snapshot shorter than its checksum')
    const sum = data.subarray(0, 32)
    const body = data.subarray(32)
    if (!createHash('sha256').update(body).digest().equals(sum)) throw new SnapshotCorruptError('snapshot checksum mismatch')
    let raw: unknown
    try {
      checkCborShape(body)
      raw = decode(body)
    } catch (err) {
      throw new SnapshotCorruptError(`snapshot is not acceptable CBOR: ${(err as Error).message}`)
    }
    const parsed = SnapshotSchema.safeParse(raw)
    if (!parsed.success) throw new SnapshotCorruptError('snapshot has an unexpected shape')
    this.kv = new Map(parsed.data.kv)
    this.roles = new Map(parsed.data.roles)
    this.capsules.restore(parsed.data.capsules as CapsuleRecord[])
    this.capsules.restoreIneligible(parsed.data.ineligible)
    this.rollouts.restore(parsed.data.rollouts)
    this.catalog.restore(parsed.data.catalog)
    try {
      this.s3.restore(parsed.data.s3)
    } catch (err) {
      throw new SnapshotCorruptError(`snapshot's S3 state has an unexpected shape: ${(err as Error).message.slice(0, 200)}`)
    }
    // De-duplication must survive a snapshot, or replicas restored from one
    // could re-apply a retried command that the others skipped.
    this.seen.clear()
    for (const [req, result] of parsed.data.seen) this.seen.set(req, result as CommandResult)
  }
}
