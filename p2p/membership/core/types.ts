// Public types of the SWIM core: member views, events and outgoing messages.
import type { MemberMeta } from '../meta.js'
import type { MemberStateName, SwimMessage } from '../messages.js'

export type MemberState = MemberStateName

/** What the core knows about one member (itself included). */
export interface MemberView {
  id: string
  state: MemberState
  incarnation: number
  meta: MemberMeta
  stateChangedAtTick: number
}

/**
 * - `joined`: a new member, or one coming back from dead/left
 * - `updated`: an alive member's metadata changed
 * - `suspect`: a member is suspected of having failed
 * - `alive`: a suspicion was refuted (suspect → alive)
 * - `dead`: a member was declared dead
 * - `left`: a member left gracefully
 * - `reaped`: a dead or left member was dropped from the list after `reclaimMs`
 */
export type MemberEventKind = 'joined' | 'updated' | 'suspect' | 'alive' | 'dead' | 'left' | 'reaped'

export interface MemberEvent {
  kind: MemberEventKind
  member: MemberView
  tick: number
}

export interface Outgoing {
  to: string
  /** Known addresses of `to` (its metadata, or the seed's addresses); may be empty. */
  addrs: string[]
  msg: SwimMessage
}

export interface Drained {
  send: Outgoing[]
  events: MemberEvent[]
}

export interface SwimCounters {
  /** Direct probes started. */
  probesSent: number
  /** Probes that got no ack, directly or indirectly, before their deadline. */
  probesFailed: number
  /** ping-req messages sent. */
  indirectProbesSent: number
  /** Members this node started suspecting after its own failed probe. */
  suspicionsRaised: number
  /** Suspicions seen refuted (a suspect member came back alive). */
  suspicionsRefuted: number
  /** Times this node refuted news of its own failure. */
  selfRefutations: number
  messagesIn: number
  messagesOut: number
}
