// `/bolt/exec/1`: `bolt-agent exec NAME -- CMD` asked of any agent runs on the
// node that runs the instance, through its runtime's exec. One request frame
// (instance, argv, timeout), one result frame (exit code and output, each
// stream cut at MAX_EXEC_OUTPUT). Admitted members only, as every cluster
// protocol: a member may already place any capsule with any command.
import { lpStream } from '@libp2p/utils'
import type { Stream, StreamHandler } from '@libp2p/interface'
import { z } from 'zod'
import { decodeFrame, encodeFrame } from '../../p2p/wire.js'

export const EXEC_PROTOCOL = '/bolt/exec/1'
export const MAX_EXEC_OUTPUT = 1024 * 1024
const MAX_EXEC_FRAME = 2 * MAX_EXEC_OUTPUT + 64 * 1024
export const DEFAULT_EXEC_TIMEOUT_MS = 60_000
export const MAX_EXEC_TIMEOUT_MS = 3_600_000

export const ExecRequestSchema = z.object({
  instance: z.string().max(128),
  argv: z.array(z.string().max(32_768)).min(1).max(256),
  timeoutMs: z.number().int().min(1).max(MAX_EXEC_TIMEOUT_MS).default(DEFAULT_EXEC_TIMEOUT_MS)
})
export type ExecRequest = z.infer<typeof ExecRequestSchema>
export const ExecReplySchema = z.discriminatedUnion('t', [
  z.object({ t: z.literal('done'), exitCode: z.number().int(), stdout: z.string().max(MAX_EXEC_OUTPUT), stderr: z.string().max(MAX_EXEC_OUTPUT) }),
  z.object({ t: z.literal('error'), message: z.string().max(1024) })
])
export interface ExecOutcome { exitCode: number, stdout: string, stderr: string }

/** Output cut to the frame's bound, keeping its end (where errors usually are). */
export function boundOutput (s: string): string {
  return s.length <= MAX_EXEC_OUTPUT ? s : s.slice(s.length - MAX_EXEC_OUTPUT)
}

export function execHandler (run: (req: ExecRequest, signal: AbortSignal) => Promise<ExecOutcome>): StreamHandler {
  return (stream) => {
    void (async () => {
      const lp = lpStream(stream, { maxDataLength: MAX_EXEC_FRAME })
      const ac = new AbortController()
      stream.addEventListener('close', () => ac.abort(), { once: true })
      try {
        const req = decodeFrame(ExecRequestSchema, (await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray(), MAX_EXEC_FRAME)
        let reply: z.infer<typeof ExecReplySchema>
        try {
          const r = await run(req, ac.signal)
          reply = { t: 'done', exitCode: r.exitCode, stdout: boundOutput(r.stdout), stderr: boundOutput(r.stderr) }
        } catch (err) {
          reply = { t: 'error', message: (err as Error).message.slice(0, 1000) }
        }
        if (!ac.signal.aborted) await lp.write(encodeFrame(ExecReplySchema, reply, MAX_EXEC_FRAME))
        await stream.close()
      } catch (err) {
        stream.abort(err as Error)
      } finally {
        ac.abort()
      }
    })()
  }
}

export async function execRemote (stream: Stream, req: ExecRequest, signal: AbortSignal): Promise<ExecOutcome> {
  const lp = lpStream(stream, { maxDataLength: MAX_EXEC_FRAME })
  const onAbort = (): void => { stream.abort(new Error('client went away')) }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    await lp.write(encodeFrame(ExecRequestSchema, req, MAX_EXEC_FRAME))
    const f = decodeFrame(ExecReplySchema, (await lp.read({ signal })).subarray(), MAX_EXEC_FRAME)
    if (f.t === 'error') throw new Error(f.message)
    return { exitCode: f.exitCode, stdout: f.stdout, stderr: f.stderr }
  } finally {
    signal.removeEventListener('abort', onAbort)
    stream.abort(new Error('done'))
  }
}
