// Wire messages of /bolt/swim/1, as zod schemas (the types the core uses are
// inferred from them). Every field is bounded; the sender's id is not in the
// message: it is the authenticated libp2p peer id of the stream.
import { z } from 'zod'
import { MemberMetaSchema, MAX_ADDRS, MAX_ADDR_CHARS } from './meta.js'
import { LEFT_SIG_HEX_CHARS } from './left-proof.js'

export const MAX_ID_CHARS = 128
/** Piggybacked gossip items in one message. */
export const MAX_GOSSIP_ITEMS = 256
/** Member states in one push-pull message (larger states are split). */
export const MAX_PUSH_PULL_STATES = 2048

const Id = z.string().min(1).max(MAX_ID_CHARS)
const Inc = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)
const Seq = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)
/** The leaver's signature of its own departure (left-proof.ts), relayed with the news. */
const LeftSig = z.string().length(LEFT_SIG_HEX_CHARS).regex(/^[0-9a-f]+$/)

export const MemberStateNameSchema = z.enum(['alive', 'suspect', 'dead', 'left'])
export type MemberStateName = z.infer<typeof MemberStateNameSchema>

/** One piece of membership news, piggybacked on any message. */
export const GossipSchema = z.discriminatedUnion('k', [
  z.object({ k: z.literal('alive'), id: Id, inc: Inc, meta: MemberMetaSchema }),
  z.object({ k: z.literal('suspect'), id: Id, inc: Inc, from: Id }),
  z.object({ k: z.literal('dead'), id: Id, inc: Inc, from: Id }),
  z.object({ k: z.literal('left'), id: Id, inc: Inc, sig: LeftSig.optional() })
])
export type Gossip = z.infer<typeof GossipSchema>

/** A member's full state in a push-pull exchange. */
export const PushPullStateSchema = z.object({
  id: Id,
  inc: Inc,
  state: MemberStateNameSchema,
  meta: MemberMetaSchema.optional(),
  /** With state `left`: the member's own signature of its departure. */
  sig: LeftSig.optional()
})
export type PushPullState = z.infer<typeof PushPullStateSchema>

const gossip = z.array(GossipSchema).max(MAX_GOSSIP_ITEMS)

export const SwimMessageSchema = z.discriminatedUnion('t', [
  /** Direct probe; `target` guards against a misrouted ping reaching a different node. */
  z.object({ t: z.literal('ping'), seq: Seq, target: Id, g: gossip }),
  z.object({ t: z.literal('ack'), seq: Seq, g: gossip }),
  /** Lifeguard: a relay that got no ack from the target says so, so the requester can tell a dead target from its own trouble. */
  z.object({ t: z.literal('nack'), seq: Seq, g: gossip }),
  /** Indirect probe request: please ping `target` and forward its ack as `seq`. */
  z.object({ t: z.literal('ping-req'), seq: Seq, target: Id, addrs: z.array(z.string().min(1).max(MAX_ADDR_CHARS)).max(MAX_ADDRS), g: gossip }),
  /** A gossip round: piggyback only. */
  z.object({ t: z.literal('gossip'), g: gossip }),
  /** Anti-entropy: full state; `reply` asks for the receiver's state back; `join` marks a joiner. */
  z.object({ t: z.literal('push-pull'), join: z.boolean(), reply: z.boolean(), states: z.array(PushPullStateSchema).max(MAX_PUSH_PULL_STATES) })
])
export type SwimMessage = z.infer<typeof SwimMessageSchema>
