// The Raft commands of the cluster state, one registry entry each: its zod
// schema, the largest encoded size it may have, and who may issue it. The
// leader admits a command through its entry before proposing it
// (admitCommand); every replica decodes committed bytes with the same guarded
// decoder (decodeCommand). A new command joins by adding one entry to COMMANDS;
// a command whose `op` has no entry is refused everywhere.
import { decode, encode } from 'cbor-x'
import { z } from 'zod'
import { checkCborShape } from '../../p2p/membership/cbor-guard.js'
import { CapsuleCommandSchemas } from './capsules.js'
import { CatalogCommandSchema } from './services.js'
import { RolloutCommandSchemas } from './rollouts.js'
import { S3CommandSchemas } from '../s3/s3-state.js'

export const MAX_KEY_BYTES = 512
export const MAX_VALUE_BYTES = 64 * 1024
/** Largest encoded command of any kind; checked before a byte is decoded. */
export const MAX_COMMAND_BYTES = 512 * 1024
/** Bound of the small commands (placements, reports, ...): strings of at most 512 characters. */
const SMALL = 8 * 1024
/** put/cas: a key and up to two values of MAX_VALUE_BYTES characters (UTF-8: up to 3 bytes each). */
const KV_BYTES = MAX_KEY_BYTES * 3 + 2 * MAX_VALUE_BYTES * 3 + 1024
/** An S3 object record: a key of up to 1 KiB, user metadata of up to 2 KiB, checksums and holders. */
const S3_RECORD_BYTES = 64 * 1024

const Req = z.string().max(64)
const Key = z.string().min(1).max(MAX_KEY_BYTES)
const Value = z.string().max(MAX_VALUE_BYTES)

export const KvCommandSchemas = {
  put: z.object({ op: z.literal('put'), req: Req, key: Key, value: Value }),
  cas: z.object({ op: z.literal('cas'), req: Req, key: Key, old: Value.nullable(), value: Value }),
  delete: z.object({ op: z.literal('delete'), req: Req, key: Key }),
  role: z.object({ op: z.literal('role'), req: Req, id: z.string().max(128), role: z.enum(['server', 'client']) }),
  noop: z.object({ op: z.literal('noop'), req: Req })
}

/** What an authorization rule may read of the current (leader's) state. */
export interface CommandStateView {
  capsules: { instance: (name: string) => { instance: { node: string | null } } | undefined }
}

/** Who sent the command (the authenticated peer id) and who checks it (the leader itself). */
export interface IssuerContext {
  from: string
  leader: string
  state: CommandStateView
}

/** null: allowed; otherwise why the command is refused (said to the issuer). */
export type Authorize<C> = (cmd: C, ctx: IssuerContext) => string | null

export interface CommandEntry<S extends z.ZodType> {
  schema: S
  /** Largest encoded size of this command, in bytes. */
  maxBytes: number
  authorize: Authorize<z.infer<S>>
}

function entry<S extends z.ZodType> (e: CommandEntry<S>): CommandEntry<S> { return e }

/** Operators may act through the API of any member (every API token holder is an operator). */
const anyMember: Authorize<unknown> = () => null
/** Only the leader's own components (the scheduler, autopilot) issue these. */
const leaderOnly: Authorize<unknown> = (_cmd, ctx) => ctx.from === ctx.leader ? null : 'only the Raft leader issues this command'

/**
 * The rule table (who may issue what; `leader` = proposed by the leader's own
 * code, never forwarded):
 *
 *   op               max bytes  who may issue it
 *   put, cas         KV_BYTES   any member (operators' KV API, mirror tags, object metadata)
 *   delete, noop     SMALL      any member
 *   role             SMALL      leader
 *   capsule.create   512 KiB    any member (`run` / stacks through any agent's API)
 *   capsule.stop     SMALL      any member
 *   capsule.remove   SMALL      any member
 *   capsule.restart  512 KiB    any member (`restart`, rolling updates)
 *   capsule.scale    SMALL      any member (`scale`)
 *   capsule.update   512 KiB    any member (`up` of an edited stack)
 *   capsule.migrate  SMALL      any member (`node drain`, `leave`)
 *   capsule.release  SMALL      any member (a drain's deadline, `leave`)
 *   node.eligibility SMALL      any member (`node eligibility`, `node drain`)
 *   capsule.place    SMALL      leader (its scheduler)
 *   capsule.unplace  SMALL      leader (its scheduler)
 *   capsule.pending  SMALL      leader (its scheduler)
 *   deployment.start 512 KiB    any member (`up` of a changed capsule)
 *   deployment.step, .replaced, .finish  SMALL  leader (its rollout driver)
 *   drain.start      SMALL      any member (`node drain`, `leave`)
 *   drain.finish     SMALL      any member (the leader's driver; `leave` with no other node to move to)
 *   capsule.report   SMALL      the node named in it (apply: only for an instance placed there)
 *   instance.health  512 KiB    the node named in it (apply: only for instances it runs)
 *   catalog.update   512 KiB    leader (its catalog keeper)
 *   s3.*             64 KiB     any member (the S3 endpoint of any agent, after it checked the request's signature)
 *   s3.object.holders 64 KiB    leader (its S3 repair)
 *
 * Apply re-checks each command's preconditions (generations, placement), so
 * these rules are about who, not about staleness.
 */
export const COMMANDS = {
  put: entry({ schema: KvCommandSchemas.put, maxBytes: KV_BYTES, authorize: anyMember }),
  cas: entry({ schema: KvCommandSchemas.cas, maxBytes: KV_BYTES, authorize: anyMember }),
  delete: entry({ schema: KvCommandSchemas.delete, maxBytes: SMALL, authorize: anyMember }),
  role: entry({ schema: KvCommandSchemas.role, maxBytes: SMALL, authorize: leaderOnly }),
  noop: entry({ schema: KvCommandSchemas.noop, maxBytes: SMALL, authorize: anyMember }),
  'capsule.create': entry({ schema: CapsuleCommandSchemas['capsule.create'], maxBytes: MAX_COMMAND_BYTES, authorize: anyMember }),
  'capsule.stop': entry({ schema: CapsuleCommandSchemas['capsule.stop'], maxBytes: SMALL, authorize: anyMember }),
  'capsule.remove': entry({ schema: CapsuleCommandSchemas['capsule.remove'], maxBytes: SMALL, authorize: anyMember }),
  'capsule.restart': entry({ schema: CapsuleCommandSchemas['capsule.restart'], maxBytes: MAX_COMMAND_BYTES, authorize: anyMember }),
  'capsule.scale': entry({ schema: CapsuleCommandSchemas['capsule.scale'], maxBytes: SMALL, authorize: anyMember }),
  'capsule.update': entry({ schema: CapsuleCommandSchemas['capsule.update'], maxBytes: MAX_COMMAND_BYTES, authorize: anyMember }),
  'capsule.migrate': entry({ schema: CapsuleCommandSchemas['capsule.migrate'], maxBytes: SMALL, authorize: anyMember }),
  'capsule.release': entry({ schema: CapsuleCommandSchemas['capsule.release'], maxBytes: SMALL, authorize: anyMember }),
  'node.eligibility': entry({ schema: CapsuleCommandSchemas['node.eligibility'], maxBytes: SMALL, authorize: anyMember }),
  'capsule.place': entry({ schema: CapsuleCommandSchemas['capsule.place'], maxBytes: SMALL, authorize: leaderOnly }),
  'capsule.unplace': entry({ schema: CapsuleCommandSchemas['capsule.unplace'], maxBytes: SMALL, authorize: leaderOnly }),
  'capsule.pending': entry({ schema: CapsuleCommandSchemas['capsule.pending'], maxBytes: SMALL, authorize: leaderOnly }),
  'deployment.start': entry({ schema: RolloutCommandSchemas['deployment.start'], maxBytes: MAX_COMMAND_BYTES, authorize: anyMember }),
  'deployment.step': entry({ schema: RolloutCommandSchemas['deployment.step'], maxBytes: SMALL, authorize: leaderOnly }),
  'deployment.replaced': entry({ schema: RolloutCommandSchemas['deployment.replaced'], maxBytes: SMALL, authorize: leaderOnly }),
  'deployment.finish': entry({ schema: RolloutCommandSchemas['deployment.finish'], maxBytes: SMALL, authorize: leaderOnly }),
  'drain.start': entry({ schema: RolloutCommandSchemas['drain.start'], maxBytes: SMALL, authorize: anyMember }),
  'drain.finish': entry({ schema: RolloutCommandSchemas['drain.finish'], maxBytes: SMALL, authorize: anyMember }),
  'capsule.report': entry({
    schema: CapsuleCommandSchemas['capsule.report'],
    maxBytes: SMALL,
    // Apply refuses a report for an instance not placed on the node it names
    // (the leader's applied state may lag what the reporter saw committed),
    // so with this rule a node reports only for instances placed on itself.
    authorize: (cmd, ctx) => cmd.node === ctx.from ? null : `a node reports only its own instances (the report names ${cmd.node})`
  }),
  'instance.health': entry({
    schema: CapsuleCommandSchemas['instance.health'],
    maxBytes: MAX_COMMAND_BYTES,
    authorize: (cmd, ctx) => cmd.node === ctx.from ? null : `a node reports health only for its own instances (the update names ${cmd.node})`
  }),
  'catalog.update': entry({ schema: CatalogCommandSchema, maxBytes: MAX_COMMAND_BYTES, authorize: leaderOnly }),
  's3.key.put': entry({ schema: S3CommandSchemas['s3.key.put'], maxBytes: SMALL, authorize: anyMember }),
  's3.key.delete': entry({ schema: S3CommandSchemas['s3.key.delete'], maxBytes: SMALL, authorize: anyMember }),
  's3.bucket.create': entry({ schema: S3CommandSchemas['s3.bucket.create'], maxBytes: SMALL, authorize: anyMember }),
  's3.bucket.delete': entry({ schema: S3CommandSchemas['s3.bucket.delete'], maxBytes: SMALL, authorize: anyMember }),
  's3.object.put': entry({ schema: S3CommandSchemas['s3.object.put'], maxBytes: S3_RECORD_BYTES, authorize: anyMember }),
  's3.object.delete': entry({ schema: S3CommandSchemas['s3.object.delete'], maxBytes: SMALL, authorize: anyMember }),
  's3.upload.create': entry({ schema: S3CommandSchemas['s3.upload.create'], maxBytes: S3_RECORD_BYTES, authorize: anyMember }),
  's3.upload.part': entry({ schema: S3CommandSchemas['s3.upload.part'], maxBytes: SMALL, authorize: anyMember }),
  's3.upload.complete': entry({ schema: S3CommandSchemas['s3.upload.complete'], maxBytes: S3_RECORD_BYTES, authorize: anyMember }),
  's3.upload.abort': entry({ schema: S3CommandSchemas['s3.upload.abort'], maxBytes: SMALL, authorize: anyMember }),
  's3.object.holders': entry({ schema: S3CommandSchemas['s3.object.holders'], maxBytes: S3_RECORD_BYTES, authorize: leaderOnly })
}

export type CommandOp = keyof typeof COMMANDS
export type Command = { [K in CommandOp]: z.infer<typeof COMMANDS[K]['schema']> }[CommandOp]
export type CommandInput = Command extends infer C ? C extends { req: string } ? Omit<C, 'req'> : never : never

/** Committed or proposed bytes that are not a well-formed command. */
export class CommandDecodeError extends Error {
  override name = 'CommandDecodeError'
}
/** A command whose `op` has no registry entry (from a newer agent, or garbage). */
export class UnknownCommandError extends CommandDecodeError {
  override name = 'UnknownCommandError'
}
export class CommandTooLargeError extends CommandDecodeError {
  override name = 'CommandTooLargeError'
}
/** A well-formed command its issuer may not send; the message says why. */
export class CommandRefusedError extends Error {
  override name = 'CommandRefusedError'
}

function lookup (op: unknown): CommandEntry<z.ZodType<Command>> | undefined {
  if (typeof op !== 'string' || !Object.hasOwn(COMMANDS, op)) return undefined
  return COMMANDS[op as CommandOp] as unknown as CommandEntry<z.ZodType<Command>>
}

function safeParseCommand (raw: unknown): { ok: true, cmd: Command } | { ok: false, err: CommandDecodeError } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, err: new CommandDecodeError('a Raft command must be a map with an `op`') }
  const op = (raw as { op?: unknown }).op
  const e = lookup(op)
  if (e === undefined) return { ok: false, err: new UnknownCommandError(`unknown Raft command ${JSON.stringify(typeof op === 'string' ? op.slice(0, 64) : op ?? null)}`) }
  const r = e.schema.safeParse(raw)
  if (!r.success) {
    const issue = r.error.issues[0]
    return { ok: false, err: new CommandDecodeError(`malformed ${String(op)} command: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim()) }
  }
  return { ok: true, cmd: r.data }
}

/** Checks a command value against its registry entry; throws CommandDecodeError or a subclass. */
export function parseCommand (raw: unknown): Command {
  const r = safeParseCommand(raw)
  if (!r.ok) throw r.err
  return r.cmd
}

export function encodeCommand (cmd: Command): Uint8Array {
  const checked = parseCommand(cmd)
  const bytes = encode(checked) as Uint8Array
  const max = lookup(checked.op)?.maxBytes ?? MAX_COMMAND_BYTES
  if (bytes.byteLength > max) throw new CommandTooLargeError(`${checked.op} command of ${bytes.byteLength} bytes is above its limit of ${max} (make it smaller)`)
  return bytes
}

/**
 * Decodes Raft entry bytes into a command. Throws only CommandDecodeError
 * (or a subclass), whatever the bytes: the size is bounded first, then the
 * CBOR structure is walked in linear time before cbor-x sees it (a header
 * claiming 2^32 items would keep cbor-x busy for seconds), then the entry
 * for its `op` checks the shape and the per-command size.
 */
export function decodeCommand (bytes: Uint8Array): Command {
  if (bytes.byteLength > MAX_COMMAND_BYTES) throw new CommandTooLargeError(`Raft command of ${bytes.byteLength} bytes is above the limit of ${MAX_COMMAND_BYTES}`)
  let raw: unknown
  try {
    checkCborShape(bytes)
    raw = decode(bytes)
  } catch (err) {
    throw new CommandDecodeError(`Raft command is not acceptable CBOR: ${(err as Error).message}`)
  }
  const cmd = parseCommand(raw)
  const max = lookup(cmd.op)?.maxBytes ?? MAX_COMMAND_BYTES
  if (bytes.byteLength > max) throw new CommandTooLargeError(`${cmd.op} command of ${bytes.byteLength} bytes is above its limit of ${max}`)
  return cmd
}

/**
 * The leader's check of a command before it is proposed: decodes it like
 * apply will, then asks the command's rule whether `ctx.from` may issue it.
 * Throws CommandDecodeError (malformed, unknown, too large) or
 * CommandRefusedError (not allowed).
 */
export function admitCommand (bytes: Uint8Array, ctx: IssuerContext): Command {
  const cmd = decodeCommand(bytes)
  const why = (lookup(cmd.op) as CommandEntry<z.ZodType<Command>>).authorize(cmd, ctx)
  if (why !== null) throw new CommandRefusedError(`the leader refused ${cmd.op} from ${ctx.from}: ${why}`)
  return cmd
}
