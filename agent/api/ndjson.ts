// Streaming an HTTP response body that a client reads at its own pace: one
// JSON value per line (logs), the wait for a full socket to take more, and
// writes whose buffer is reused once the socket has taken it (the mirror).
// A client that leaves must end the wait and the stream, or the handler and
// the iterator feeding it stay suspended for the life of the agent.
import type { ServerResponse } from 'node:http'

/**
 * Whether the client of `res` is gone. The socket is destroyed a moment
 * before `res` learns of it (its 'close' comes a tick later), and a write in
 * that moment is dropped without its callback ever being called.
 */
export function clientGone (res: ServerResponse): boolean {
  return res.destroyed || res.socket?.destroyed === true
}

/** Resolves when `res` can take more ('drain') or is gone ('close', or gone already). */
export async function drained (res: ServerResponse): Promise<void> {
  if (clientGone(res)) return
  await new Promise<void>(resolve => {
    const go = (): void => { res.off('drain', go); res.off('close', go); resolve() }
    res.on('drain', go)
    res.on('close', go)
  })
}

/**
 * Writes `bytes` to `res` and calls `done` exactly once, when the socket has
 * taken them or never will: a caller that reuses the bytes' buffer in
 * `done` must not lose it to a client that left. Returns false when the
 * caller should wait (`drained`) before writing more.
 */
export function writeThen (res: ServerResponse, bytes: Uint8Array, done: () => void): boolean {
  if (clientGone(res)) { done(); return false }
  return res.write(bytes, () => { done() })
}

/**
 * Answers 200 with each value of `values` as a line of JSON, waiting for the
 * client to take them. The first value is pulled before the head is written,
 * so an iterator that throws at once (not found) fails the request with its
 * own status instead. A later error becomes a last `{"error": …}` line. When
 * the client leaves, the iterator is closed (its `finally` blocks run) and
 * this returns.
 */
export async function streamNdjson (res: ServerResponse, values: AsyncIterable<unknown>): Promise<void> {
  const it = values[Symbol.asyncIterator]()
  const first = await it.next()
  res.writeHead(200, { 'content-type': 'application/x-ndjson' })
  try {
    for (let r = first; r.done !== true; r = await it.next()) {
      if (!res.write(JSON.stringify(r.value) + '\n')) await drained(res)
      if (clientGone(res)) break
    }
  } catch (err) {
    if (!clientGone(res)) res.write(JSON.stringify({ error: (err as Error).message }) + '\n')
  } finally {
    await it.return?.()
  }
  res.end()
}
