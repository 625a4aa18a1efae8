// The S3 component's wiring to the agent's Raft and content parts (the
// narrow S3Deps), so agent.ts creates it in one line.
import type { Config } from '../config.js'
import type { ContentHost } from '../content-host.js'
import type { RaftHost } from '../raft/raft-host.js'
import { S3Error } from './errors.js'
import { createS3Service, type S3Service } from './s3-service.js'
import type { S3Log } from './deps.js'

/** How long a read waits for the Raft barrier before answering 503. */
export const S3_BARRIER_TIMEOUT_MS = 5_000

const unavailable = (err: Error): S3Error => new S3Error(503, 'ServiceUnavailable', `the cluster cannot confirm its state now (${err.message}); retry`)

export function agentS3 (o: { config: Config['s3'], dataDir: string, raft: RaftHost, content: ContentHost, self: string, alive: () => string[], log: S3Log }): S3Service {
  const barrier = async (signal: AbortSignal): Promise<void> => {
    await o.raft.node.readIndex(AbortSignal.any([signal, AbortSignal.timeout(S3_BARRIER_TIMEOUT_MS)])).catch((err: Error) => { throw unavailable(err) })
  }
  return createS3Service({
    config: o.config,
    dataDir: o.dataDir,
    table: () => o.raft.state.s3,
    barrier,
    write: async (cmd, signal) => await o.raft.write(cmd, signal).catch((err: Error) => { throw signal.aborted ? err : unavailable(err) }),
    accessKey: async (ak, signal) => {
      const k = o.raft.state.s3.key(ak)
      if (k !== undefined) return k
      await barrier(signal)
      return o.raft.state.s3.key(ak)
    },
    objects: o.content.objects,
    fetchObject: async (id, holders, signal) => {
      const alive = o.alive()
      const live = new Set(alive)
      const candidates = [...holders.filter(h => h !== o.self && live.has(h)), ...alive.filter(a => !holders.includes(a))]
      return await o.content.objects.fetchObject(id, { candidates, signal })
    },
    self: o.self,
    log: o.log
  })
}
