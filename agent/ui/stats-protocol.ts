// `/bolt/stats/1`: the dashboard of any agent shows CPU and memory of an
// instance that runs on another node by asking that node, as `logs` and
// `exec` do. One request frame naming the instance, one reply frame with
// the cgroup's figures read there. Admitted members only (the guard in
// front of every cluster protocol); the reply is bounded and checked.
import { lpStream } from '@libp2p/utils'
import type { Stream, StreamHandler } from '@libp2p/interface'
import { z } from 'zod'
import { decodeFrame, encodeFrame } from '../../p2p/wire.js'

export const STATS_PROTOCOL = '/bolt/stats/1'
export const MAX_STATS_FRAME = 4 * 1024
/** How long a node has to answer before the page is told the figures are missing. */
export const STATS_TIMEOUT_MS = 5000

const count = z.number().finite().min(0).max(Number.MAX_SAFE_INTEGER)
export const StatsRequest = z.object({ instance: z.string().min(1).max(128) })
export const InstanceFigures = z.object({ cpuNanos: count, memoryBytes: count, memoryLimitBytes: count.nullable(), pids: count })
export type InstanceFigures = z.infer<typeof InstanceFigures>
export const StatsReply = z.discriminatedUnion('t', [
  /** `stats` null: the instance is not running there (any more). `time`: when it was read, on that node's clock. */
  z.object({ t: z.literal('stats'), stats: InstanceFigures.nullable(), time: count }),
  z.object({ t: z.literal('error'), message: z.string().max(1024) })
])
export type StatsReply = z.infer<typeof StatsReply>

/** Serves the figures of instances on this node; `read` throws for one that is not here. */
export function statsHandler (read: (instance: string) => Promise<InstanceFigures | null>): StreamHandler {
  return (stream) => {
    void (async () => {
      const lp = lpStream(stream, { maxDataLength: MAX_STATS_FRAME })
      const signal = AbortSignal.timeout(STATS_TIMEOUT_MS * 2)
      try {
        const req = decodeFrame(StatsRequest, (await lp.read({ signal })).subarray(), MAX_STATS_FRAME)
        let reply: StatsReply
        try {
          reply = { t: 'stats', stats: await read(req.instance), time: Date.now() }
        } catch (err) {
          reply = { t: 'error', message: (err as Error).message.slice(0, 1000) }
        }
        await lp.write(encodeFrame(StatsReply, reply, MAX_STATS_FRAME), { signal })
        await stream.close()
      } catch (err) {
        stream.abort(err as Error)
      }
    })()
  }
}

/** Asks the node at the other end of `stream` for an instance's figures. */
export async function fetchStats (stream: Stream, instance: string, signal: AbortSignal): Promise<{ stats: InstanceFigures | null, time: number }> {
  const lp = lpStream(stream, { maxDataLength: MAX_STATS_FRAME })
  try {
    await lp.write(encodeFrame(StatsRequest, { instance }, MAX_STATS_FRAME), { signal })
    const f = decodeFrame(StatsReply, (await lp.read({ signal })).subarray(), MAX_STATS_FRAME)
    await stream.close().catch(() => {}) // the answer is read; a stream the node reset changes nothing
    if (f.t === 'error') throw new Error(f.message)
    return { stats: f.stats, time: f.time }
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}
