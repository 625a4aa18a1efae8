// Anti-entropy (memberlist's push-pull): a member's full state, split into
// messages that fit the size bound, and the rules for merging a peer's state.
import { MAX_MESSAGE_BYTES, encodedSize } from '../codec.js'
import { MAX_PUSH_PULL_STATES, type PushPullState } from '../messages.js'
import type { MemberTable } from './member-table.js'

/** Per-item overhead budgeted inside a CBOR array. */
export const ITEM_OVERHEAD = 2
/** Headroom kept below MAX_MESSAGE_BYTES for a message's envelope. */
export const ENVELOPE_HEADROOM = 64

/** Every member and tombstone, as push-pull states. */
export function stateOf (table: MemberTable): PushPullState[] {
  const states: PushPullState[] = []
  for (const m of table.members.values()) states.push({ id: m.id, inc: m.incarnation, state: m.state, meta: m.meta, ...(m.leftSig !== undefined ? { sig: m.leftSig } : {}) })
  for (const [id, t] of table.tombstones) states.push({ id, inc: t.incarnation, state: t.state, ...(t.leftSig !== undefined ? { sig: t.leftSig } : {}) })
  return states
}

/** Splits states into chunks whose encoding fits one message. */
export function chunkStates (states: PushPullState[], budget = MAX_MESSAGE_BYTES - ENVELOPE_HEADROOM): PushPullState[][] {
  const chunks: PushPullState[][] = []
  let chunk: PushPullState[] = []
  let size = 0
  for (const s of states) {
    const n = encodedSize(s) + ITEM_OVERHEAD
    if (chunk.length > 0 && (size + n > budget || chunk.length >= MAX_PUSH_PULL_STATES)) {
      chunks.push(chunk)
      chunk = []
      size = 0
    }
    chunk.push(s)
    size += n
  }
  if (chunk.length > 0) chunks.push(chunk)
  return chunks
}

/**
 * Merges a peer's state. As in memberlist, a remote `dead` or `suspect` is
 * only a suspicion here, so the member (or we, if it is about us) gets its
 * chance to refute; `left` is taken only with the member's signature.
 */
export function mergeStates (table: MemberTable, from: string, states: PushPullState[]): void {
  for (const s of states) {
    switch (s.state) {
      case 'alive':
        if (s.meta !== undefined) table.onAlive(s.id, s.inc, s.meta)
        break
      case 'left':
        table.onLeft(s.id, s.inc, s.sig)
        break
      case 'suspect':
      case 'dead':
        if (s.meta !== undefined && !table.members.has(s.id)) table.onAlive(s.id, s.inc, s.meta)
        table.onSuspect(s.id, s.inc, from)
        break
    }
  }
}
