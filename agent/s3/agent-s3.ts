// The S3 component's wiring to the agent's Raft and content parts (the
// narrow S3Deps), so agent.ts creates it in one line.
import type { Config } from '../config.js'
import { pieceSources, type ContentHost } from '../content-host.js'
import type { RaftHost } from '../raft/raft-host.js'
import { S3Error } from './errors.js'
import { createS3Service, type S3Service } from './s3-service.js'
import type { S3Log } from './deps.js'
import { S3Repair } from './repair.js'
import { DEFAULT_COLLECT_DELAY_MS, S3Collector } from './collector.js'

/** How long a read waits for the Raft barrier before answering 503. */
export const S3_BARRIER_TIMEOUT_MS = 5_000

const unavailable = (err: Error): S3Error => new S3Error(503, 'ServiceUnavailable', `the cluster cannot confirm its state now (${err.message}); retry`)

export function agentS3 (o: { config: Config['s3'], dataDir: string, raft: RaftHost, content: ContentHost, self: string, members: () => ReadonlyArray<{ id: string, state: string }>, log: S3Log }): S3Service {
  const alive = (): string[] => pieceSources(o.members(), o.self)
  const barrier = async (signal: AbortSignal): Promise<void> => {
    await o.raft.node.readIndex(AbortSignal.any([signal, AbortSignal.timeout(S3_BARRIER_TIMEOUT_MS)])).catch((err: Error) => { throw unavailable(err) })
  }
  const write = async (cmd: Parameters<RaftHost['write']>[0], signal: AbortSignal): ReturnType<RaftHost['write']> => await o.raft.write(cmd, signal).catch((err: Error) => { throw signal.aborted ? err : unavailable(err) })
  const fetchObject = async (id: string, holders: string[], signal: AbortSignal): ReturnType<ContentHost['objects']['fetchObject']> => {
    // Held here already (the common case for ranged GETs of one object): no pin to write, no peer to ask.
    const local = await o.content.objects.localManifest(id)
    if (local !== undefined) return { id, size: local.size, bytesFromPeers: 0, bytesLocal: local.size, manifest: local }
    const all = alive()
    const live = new Set(all)
    const candidates = [...holders.filter(h => h !== o.self && live.has(h)), ...all.filter(a => !holders.includes(a))]
    return await o.content.objects.fetchObject(id, { candidates, signal })
  }
  const repair = new S3Repair({
    self: o.self,
    isLeader: () => o.raft.status().role === 'leader',
    members: o.members,
    table: () => o.raft.state.s3,
    objects: o.content.objects,
    fetchObject,
    write,
    graceMs: o.config.repair_grace_ms,
    log: o.log
  })
  const collector = new S3Collector({
    table: () => o.raft.state.s3,
    kvGet: key => o.raft.state.get(key),
    store: o.content.store,
    objects: o.content.objects,
    delayMs: o.config.collect_delay_ms ?? DEFAULT_COLLECT_DELAY_MS,
    log: o.log
  })
  o.raft.state.s3.onRelease = id => { collector.release(id) }
  return createS3Service({
    repair,
    collector,
    config: o.config,
    dataDir: o.dataDir,
    table: () => o.raft.state.s3,
    barrier,
    write,
    accessKey: async (ak, signal) => {
      const k = o.raft.state.s3.key(ak)
      if (k !== undefined) return k
      await barrier(signal)
      return o.raft.state.s3.key(ak)
    },
    objects: o.content.objects,
    fetchObject,
    self: o.self,
    log: o.log
  })
}
