// Capsules on this agent: the node runtime (runc/crun), the scheduler (acts
// only while this node leads Raft), the supervisor, the logs protocol, and
// the API routes for run/ps/logs/stop/rm, pull/images and gpu.
import { join } from 'node:path'
import type { Stream, StreamHandler } from '@libp2p/interface'
import { createRuntime, gpuReport, nodeResources, type NodeRuntime } from '../native/index.js'
import { CapsuleSpecSchema } from './scheduler/spec.js'
import { parseReference } from '../p2p/content/reference.js'
import { Scheduler, type SchedulerNode } from './scheduler/scheduler.js'
import { Supervisor, runtimeNameOf } from './supervisor/supervisor.js'
import { LOGS_PROTOCOL, MAX_TAIL, fetchLogs, logsHandler, type LogLine, type LogsQuery } from './logs-protocol.js'
import { mergeAsArrived, mergeByTime } from './log-merge.js'
import { z } from 'zod'
import { ApiError, type ApiServer } from './api/server.js'
import { streamNdjson } from './api/ndjson.js'
import { checkObjectDest, checkObjectSource } from './object-paths.js'
import type { RaftHost } from './raft/raft-host.js'
import type { ContentHost } from './content-host.js'
import type { MemberView } from './membership-host.js'
import type { Config } from './config.js'
import type { Logger } from './logger.js'
import type { BoltLibp2p } from '../p2p/node.js'
import type { CapsuleRecord } from './state/capsules.js'

export interface CapsuleHostInit {
  self: string
  dataDir: string
  config: Config
  libp2p: BoltLibp2p
  raft: RaftHost
  content: ContentHost
  members: () => MemberView[]
  guard: (h: StreamHandler) => StreamHandler
  openStream: (peerId: string, protocol: string, signal: AbortSignal) => Promise<Stream>
  log: Logger
}

export interface PsRecord {
  name: string
  capsule: string
  image: string
  node: string | null
  state: string
  reason: string | null
  exitCode: number | null
  restarts: number
}

export class CapsuleHost {
  runtime: NodeRuntime | undefined
  runtimeError: string | undefined
  scheduler!: Scheduler
  supervisor!: Supervisor

  constructor (private readonly o: CapsuleHostInit) {}

  async start (): Promise<void> {
    const o = this.o
    try {
      this.runtime = await createRuntime({ dataDir: join(o.dataDir, 'runtime'), runtime: o.config.runtime.oci_runtime })
    } catch (err) {
      this.runtimeError = `no usable OCI runtime on this node: ${(err as Error).message}`
      o.log.warn(this.runtimeError)
    }
    this.scheduler = new Scheduler({
      isLeader: () => o.raft.status().role === 'leader',
      capsules: () => o.raft.state.capsules,
      nodes: () => o.members().map((m): SchedulerNode => ({ id: m.id, state: m.state, cpus: m.resources.cpus, memoryBytes: m.resources.memoryBytes, gpus: m.resources.gpus, labels: m.labels })),
      write: async (cmd, signal) => await o.raft.write(cmd, signal),
      deadGraceMs: o.config.raft.dead_voter_grace_ms,
      log: o.log.child({ part: 'scheduler' })
    })
    this.supervisor = new Supervisor({
      self: o.self,
      capsules: () => o.raft.state.capsules,
      write: async (cmd, signal) => await o.raft.write(cmd, signal),
      runtime: this.runtime,
      ...(this.runtimeError !== undefined ? { runtimeError: this.runtimeError } : {}),
      images: { prepare: async (ref, signal) => await o.content.prepareForRuntime(this.runtime as NodeRuntime, ref, signal) },
      log: o.log.child({ part: 'supervisor' })
    })
    o.raft.state.onApply((cmd) => {
      if (cmd.op.startsWith('capsule.')) { this.supervisor.kick(); if (cmd.op === 'capsule.create' || cmd.op === 'capsule.unplace') this.scheduler.kick() }
    })
    await o.libp2p.handle(LOGS_PROTOCOL, o.guard(logsHandler((instance, q, signal) => this.localLogs(instance, q, signal))), { maxInboundStreams: 32 })
    this.scheduler.start()
    this.supervisor.start()
  }

  /** Stops and removes every capsule on this node (an ephemeral dev agent leaves nothing behind). */
  async removeAllLocal (): Promise<void> {
    const rt = this.runtime
    if (rt === undefined) return
    for (const c of await rt.list().catch(() => [])) {
      await rt.stop(c.name, { timeoutMs: 3000 }).catch(() => undefined)
      await rt.remove(c.name, { force: true }).catch(() => undefined)
    }
  }

  async stop (): Promise<void> {
    this.scheduler?.stop()
    await this.supervisor?.stop()
    await this.o.libp2p.unhandle(LOGS_PROTOCOL).catch(() => {})
    await this.runtime?.close().catch(() => {})
  }

  /** CPUs, memory and GPUs of this node for membership metadata. */
  static async resources (): Promise<{ cpus: number, memoryBytes: number, gpus: Array<{ vendor: string, model: string, memoryBytes: number, index: number }> }> {
    const r = await nodeResources()
    return { cpus: r.cpus, memoryBytes: r.memoryBytes, gpus: r.gpus.map(g => ({ vendor: g.vendor, model: g.model, memoryBytes: g.memoryBytes ?? 0, index: g.index })) }
  }

  ps (): PsRecord[] {
    const out: PsRecord[] = []
    for (const c of this.o.raft.state.capsules.list()) {
      for (const i of c.instances) {
        out.push({ name: i.name, capsule: c.spec.name, image: c.spec.image, node: i.node, state: i.state, reason: i.reason, exitCode: i.exitCode, restarts: i.restarts })
      }
    }
    return out.sort((a, b) => a.name < b.name ? -1 : 1)
  }

  private async * localLogs (instance: string, q: LogsQuery, signal: AbortSignal): AsyncIterable<LogLine> {
    const rtName = this.supervisor.runtimeNameFor(instance)
    if (rtName === undefined || this.runtime === undefined) throw new Error(`${instance} does not run on this node`)
    for await (const r of this.runtime.logs(rtName, { follow: q.follow, signal, ...(q.tail !== undefined ? { tail: q.tail } : {}), ...(q.since !== undefined ? { since: q.since } : {}) })) {
      yield { stream: r.stream === 'stderr' ? 'stderr' : 'stdout', time: r.time, line: r.line }
    }
  }

  /**
   * Log lines of an instance, or of every placed instance of a capsule
   * (each line naming its instance), from whichever nodes run them.
   */
  logs (name: string, q: LogsQuery, signal: AbortSignal): AsyncIterable<LogLine> {
    const table = this.o.raft.state.capsules
    const one = table.instance(name)
    const instances = one !== undefined ? [one.instance] : (table.get(name)?.instances ?? [])
    if (instances.length === 0) throw new ApiError(404, `no capsule or instance named ${name}`)
    const placed = instances.filter(i => i.node !== null)
    if (placed.length === 0) {
      const i = instances[0]!
      throw new ApiError(409, `${instances.length === 1 ? i.name : name} is not placed on a node yet (${i.reason ?? i.state})`)
    }
    const sources = placed.map(i => this.instanceLogs(i.name, i.node as string, q, signal))
    // Without --follow every source ends, so lines merge by time; following, they come as they are written.
    return q.follow ? mergeAsArrived(sources) : mergeByTime(sources)
  }

  private async * instanceLogs (instance: string, node: string, q: LogsQuery, signal: AbortSignal): AsyncIterable<LogLine> {
    const lines = node === this.o.self
      ? this.localLogs(instance, q, signal)
      : fetchLogs(await this.o.openStream(node, LOGS_PROTOCOL, AbortSignal.any([signal, AbortSignal.timeout(10_000)])), instance, q, signal)
    for await (const l of lines) yield { ...l, instance }
  }

  registerRoutes (api: ApiServer): void {
    const raft = this.o.raft
    api.route('POST', '/v1/capsules', async (req) => {
      const parsed = CapsuleSpecSchema.safeParse(await req.body())
      if (!parsed.success) {
        const i = parsed.error.issues[0]
        throw new ApiError(400, `bad capsule spec: ${i?.path.join('.') ?? ''}: ${i?.message ?? ''}`)
      }
      // A reference no registry could serve is refused here, not found out by the node's pull later.
      try { parseReference(parsed.data.image) } catch (err) { throw new ApiError(400, (err as Error).message) }
      const r = await raft.write({ op: 'capsule.create', spec: parsed.data }, req.signal)
      if (!r.ok) throw new ApiError(409, r.reason)
      return raft.state.capsules.get(parsed.data.name) satisfies CapsuleRecord | undefined
    })
    api.route('GET', '/v1/capsules', async (req) => {
      await raft.node.readIndex(AbortSignal.any([req.signal, AbortSignal.timeout(5000)])).catch(() => undefined)
      return this.ps()
    })
    api.route('POST', '/v1/capsules/:name/stop', async (req) => {
      const r = await raft.write({ op: 'capsule.stop', name: req.params.name ?? '' }, req.signal)
      if (!r.ok) throw new ApiError(404, r.reason)
      return { name: req.params.name, stopping: true }
    })
    api.route('DELETE', '/v1/capsules/:name', async (req) => {
      const r = await raft.write({ op: 'capsule.remove', name: req.params.name ?? '' }, req.signal)
      if (!r.ok) throw new ApiError(404, r.reason)
      return { name: req.params.name, removed: true }
    })
    api.route('GET', '/v1/logs/:name', async (req, res) => {
      const q = LogsQueryParams.safeParse({ follow: req.query.get('follow') === '1', tail: req.query.get('tail') ?? undefined, since: req.query.get('since') ?? undefined })
      if (!q.success) throw new ApiError(400, `bad logs query: ${q.error.issues[0]?.path.join('.') ?? ''}: ${q.error.issues[0]?.message ?? ''}`)
      const lines = this.logs(req.params.name ?? '', q.data, req.signal)
      await streamNdjson(res, lines)
      return undefined
    })
    api.route('POST', '/v1/images/pull', async (req, res) => {
      const body = await req.body() as { ref?: unknown }
      if (typeof body.ref !== 'string' || body.ref === '') throw new ApiError(400, 'ref is required')
      const ref = body.ref
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      try {
        const done = await this.o.content.pull(ref, (p) => { res.write(JSON.stringify({ event: 'progress', ...p }) + '\n') }, req.signal)
        res.end(JSON.stringify({ event: 'done', ref: done.ref, digest: done.digest, size: done.size, bytesFromPeers: done.bytesFromPeers, bytesFromRegistry: done.bytesFromRegistry, bytesLocal: done.bytesLocal }) + '\n')
      } catch (err) {
        res.end(JSON.stringify({ event: 'error', error: (err as Error).message }) + '\n')
      }
      return undefined
    })
    api.route('GET', '/v1/images', async () => await this.o.content.puller.images())
    api.route('POST', '/v1/objects', async (req) => {
      const body = await req.body() as { path?: unknown, replicas?: unknown }
      if (typeof body.path !== 'string' || !body.path.startsWith('/')) throw new ApiError(400, 'path must be an absolute file path on this node')
      const replicas = typeof body.replicas === 'number' && Number.isInteger(body.replicas) && body.replicas >= 0 ? body.replicas : 2
      await checkObjectSource(body.path)
      const r = await this.o.content.objects.putObject(body.path, { replicas, signal: req.signal })
      // Object metadata goes into the Raft state, so any member can list it.
      await this.o.raft.write({ op: 'put', key: `objects/${r.id}`, value: JSON.stringify({ size: r.size, chunks: r.chunks, replicas: r.replicas }) }, req.signal).catch(() => undefined)
      return r
    })
    api.route('POST', '/v1/objects/:id/get', async (req) => {
      const body = await req.body() as { dest?: unknown }
      if (typeof body.dest !== 'string' || !body.dest.startsWith('/')) throw new ApiError(400, 'dest must be an absolute path on this node')
      await checkObjectDest(body.dest)
      return await this.o.content.getObject(req.params.id ?? '', body.dest, this.o.raft, req.signal)
    })
    api.route('GET', '/v1/gpu', async () => await gpuReport())
  }
}

/** `GET /v1/logs/NAME?follow=1&tail=N&since=MS`. */
const LogsQueryParams = z.object({
  follow: z.boolean(),
  tail: z.coerce.number().int().min(0).max(MAX_TAIL).optional(),
  since: z.coerce.number().finite().optional()
})

export { runtimeNameOf }
