// Reads of the cluster state through the API (`ps`, `inspect`, `services`):
// wait until this replica has what the leader committed (ReadIndex). With no
// leader reachable in time they still answer, from this node's copy of the
// state, marked `x-bolt-stale: 1`: a cut-off node can show what it last knew.
import type { ServerResponse } from 'node:http'

/** How long a read waits for the leader's commit index before answering from the local copy. */
export const FRESH_READ_TIMEOUT_MS = 5000

export async function freshOrStale (readIndex: (signal: AbortSignal) => Promise<unknown>, signal: AbortSignal, res: ServerResponse, log: { debug: (obj: object, msg: string) => void }): Promise<void> {
  try {
    await readIndex(AbortSignal.any([signal, AbortSignal.timeout(FRESH_READ_TIMEOUT_MS)]))
  } catch (err) {
    log.debug({ err: (err as Error).message }, 'no ReadIndex: answering from this node\'s copy of the state')
    res.setHeader('x-bolt-stale', '1')
  }
}
