// `/bolt/api/1`: a member that is not the Raft leader forwards a write to the
// leader as one request/response exchange on a short stream. Frames are CBOR
// checked by zod and bounded; the handler never throws out.
import { lpStream } from '@libp2p/utils'
import type { Stream, StreamHandler } from '@libp2p/interface'
import { z } from 'zod'
import { decodeFrame, encodeFrame } from '../../p2p/wire.js'

export const API_FORWARD_PROTOCOL = '/bolt/api/1'
export const MAX_FORWARD_FRAME = 1024 * 1024

export const ForwardRequest = z.discriminatedUnion('op', [
  z.object({ op: z.literal('propose'), data: z.custom<Uint8Array>(v => v instanceof Uint8Array, 'bytes'), req: z.string().max(64) }),
  z.object({ op: z.literal('join'), id: z.string().max(128), pref: z.enum(['auto', 'server', 'client']) })
])
export type ForwardRequest = z.infer<typeof ForwardRequest>

export const ForwardResponse = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), result: z.unknown().optional() }),
  z.object({ ok: z.literal(false), error: z.string().max(1024), name: z.string().max(64), leader: z.string().max(128).nullable().optional() })
])
export type ForwardResponse = z.infer<typeof ForwardResponse>

export function forwardHandler (serve: (req: ForwardRequest, from: string, signal: AbortSignal) => Promise<ForwardResponse>): StreamHandler {
  return (stream, conn) => {
    void (async () => {
      const lp = lpStream(stream, { maxDataLength: MAX_FORWARD_FRAME })
      const signal = AbortSignal.timeout(15_000)
      try {
        const req = decodeFrame(ForwardRequest, (await lp.read({ signal })).subarray(), MAX_FORWARD_FRAME)
        let res: ForwardResponse
        try {
          res = await serve(req, conn.remotePeer.toString(), signal)
        } catch (err) {
          const e = err as Error & { leader?: string | null }
          res = { ok: false, error: e.message, name: e.name, leader: e.leader ?? null }
        }
        await lp.write(encodeFrame(ForwardResponse, res, MAX_FORWARD_FRAME), { signal })
        await stream.close()
      } catch (err) {
        stream.abort(err as Error)
      }
    })()
  }
}

export async function forwardRequest (stream: Stream, req: ForwardRequest, signal: AbortSignal): Promise<ForwardResponse> {
  const lp = lpStream(stream, { maxDataLength: MAX_FORWARD_FRAME })
  try {
    await lp.write(encodeFrame(ForwardRequest, req, MAX_FORWARD_FRAME), { signal })
    const res = decodeFrame(ForwardResponse, (await lp.read({ signal })).subarray(), MAX_FORWARD_FRAME)
    await stream.close().catch(() => {}) // the answer is read; a stream the leader reset changes nothing
    return res
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}
