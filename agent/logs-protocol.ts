// `/bolt/logs/1`: `bolt-agent logs NAME [-f]` asked of any agent is served by
// the node that runs the capsule. Request: one frame naming the instance;
// response: frames of log lines until the end (or the client goes away).
import { lpStream } from '@libp2p/utils'
import type { Stream, StreamHandler } from '@libp2p/interface'
import { z } from 'zod'
import { decodeFrame, encodeFrame } from '../p2p/wire.js'
import { MAX_TAIL } from './logs-query.js'

export const LOGS_PROTOCOL = '/bolt/logs/1'
export const MAX_LOG_FRAME = 256 * 1024

export { MAX_TAIL }

/** What to read: `tail` and `since` (ms since the epoch) are optional, so older nodes' requests still parse. */
export const LogsRequest = z.object({ instance: z.string().max(128), follow: z.boolean(), tail: z.number().int().min(0).max(MAX_TAIL).optional(), since: z.number().finite().optional(), previous: z.boolean().optional() })
export type LogsQuery = Omit<z.infer<typeof LogsRequest>, 'instance'>
export const LogFrame = z.discriminatedUnion('t', [
  z.object({ t: z.literal('line'), stream: z.enum(['stdout', 'stderr']), time: z.number(), line: z.string().max(200_000) }),
  z.object({ t: z.literal('end') }),
  z.object({ t: z.literal('error'), message: z.string().max(1024) })
])
export type LogFrame = z.infer<typeof LogFrame>
export interface LogLine { stream: 'stdout' | 'stderr', time: number, line: string, instance?: string }

export function logsHandler (serve: (instance: string, q: LogsQuery, signal: AbortSignal) => AsyncIterable<LogLine>): StreamHandler {
  return (stream) => {
    void (async () => {
      const lp = lpStream(stream, { maxDataLength: MAX_LOG_FRAME })
      const ac = new AbortController()
      stream.addEventListener('close', () => ac.abort(), { once: true })
      try {
        const req = decodeFrame(LogsRequest, (await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray(), MAX_LOG_FRAME)
        try {
          const { instance, ...q } = req
          for await (const l of serve(instance, q, ac.signal)) {
            await lp.write(encodeFrame(LogFrame, { t: 'line', stream: l.stream, time: l.time, line: l.line }, MAX_LOG_FRAME))
          }
          await lp.write(encodeFrame(LogFrame, { t: 'end' }, MAX_LOG_FRAME))
        } catch (err) {
          if (!ac.signal.aborted) await lp.write(encodeFrame(LogFrame, { t: 'error', message: (err as Error).message.slice(0, 1000) }, MAX_LOG_FRAME))
        }
        await stream.close()
      } catch (err) {
        stream.abort(err as Error)
      } finally {
        ac.abort()
      }
    })()
  }
}

export async function * fetchLogs (stream: Stream, instance: string, q: LogsQuery, signal: AbortSignal): AsyncIterable<LogLine> {
  const lp = lpStream(stream, { maxDataLength: MAX_LOG_FRAME })
  const onAbort = (): void => { stream.abort(new Error('client went away')) }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    await lp.write(encodeFrame(LogsRequest, { instance, ...q }, MAX_LOG_FRAME))
    for (;;) {
      const f = decodeFrame(LogFrame, (await lp.read()).subarray(), MAX_LOG_FRAME)
      if (f.t === 'end') return
      if (f.t === 'error') throw new Error(f.message)
      yield { stream: f.stream, time: f.time, line: f.line }
    }
  } finally {
    signal.removeEventListener('abort', onAbort)
    stream.abort(new Error('done'))
  }
}
