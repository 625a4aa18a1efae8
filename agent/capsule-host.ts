// Capsules on this agent: the node runtime (runc/crun), the scheduler (acts
// only while this node leads Raft), the supervisor, the logs protocol, and
// the API routes for run/ps/logs/stop/rm (images, objects and gpu: content-routes.ts).
import { join } from 'node:path'
import type { Stream, StreamHandler } from '@libp2p/interface'
import { BRIDGE_DNS_PORT, createRuntime, RUNTIME_FAILURES, type NodeRuntime } from '../native/index.js'
import { CapsuleSpecSchema } from './scheduler/spec.js'
import { parseReference } from '../p2p/content/reference.js'
import { Scheduler, type SchedulerNode } from './scheduler/scheduler.js'
import { submitAnswer } from './scheduler/placement-wait.js'
import { Supervisor, runtimeNameOf } from './supervisor/supervisor.js'
import { LOGS_PROTOCOL, MAX_TAIL, fetchLogs, logsHandler, type LogLine, type LogsQuery } from './logs-protocol.js'
import { mergeAsArrived, mergeByTime } from './log-merge.js'
import { z } from 'zod'
import { ApiError, type ApiServer } from './api/server.js'
import { streamNdjson } from './api/ndjson.js'
import { freshOrStale } from './api/fresh-read.js'
import { registerContentRoutes } from './content-routes.js'
import type { RaftHost } from './raft/raft-host.js'
import type { ContentHost } from './content-host.js'
import type { MemberView } from './membership-host.js'
import type { Config } from './config.js'
import type { Logger } from './logger.js'
import type { BoltLibp2p } from '../p2p/node.js'
import type { CapsuleRecord } from './state/capsules.js'
import { EXEC_PROTOCOL, ExecRequestSchema, execHandler, execRemote, type ExecOutcome } from './services/exec-protocol.js'
import type { AssignedPort, NetworkMode } from './scheduler/spec.js'
import { chooseSubnet, subnetConflict } from './capsule-network.js'
import { nodeAddress } from './services/catalog-keeper.js'
import { registerCapsuleOpsRoutes } from './day2/capsule-routes.js'
import { registerNodeRoutes } from './day2/node-routes.js'
import { drainBeforeLeave } from './day2/drain.js'
import { RolloutDriver } from './day2/rollout-driver.js'
import { FenceKeeper } from './day2/fence.js'
import { registerContentOpsRoutes } from './day2/content-routes.js'

export interface CapsuleHostInit {
  self: string
  dataDir: string
  config: Config
  libp2p: BoltLibp2p
  raft: RaftHost
  content: ContentHost
  members: () => MemberView[]
  /** Publishes this node's capsule subnet and port range in its member metadata. */
  announceNetwork: (n: { subnet: string, ports: [number, number] }) => void
  guard: (h: StreamHandler) => StreamHandler
  openStream: (peerId: string, protocol: string, signal: AbortSignal) => Promise<Stream>
  /** Host root for GPU and gaming device lookups: '/' except in tests. */
  hostRoot?: string
  log: Logger
}

export interface PsRecord {
  name: string
  capsule: string
  image: string
  node: string | null
  /** The node's name, for people (`node` stays the member id). */
  nodeName: string | null
  /** The node's advertised host address: where its published ports are reached. */
  address: string | null
  ports: AssignedPort[]
  network: NetworkMode
  state: string
  reason: string | null
  exitCode: number | null
  restarts: number
  /** The health check's verdict while running (`starting|healthy|unhealthy`); null without a check. */
  health: 'healthy' | 'unhealthy' | 'starting' | null
}

/** Commands after which the scheduler looks again. */
const SCHEDULER_OPS = new Set(['capsule.create', 'capsule.unplace', 'capsule.restart', 'capsule.scale', 'capsule.update', 'capsule.report', 'capsule.migrate', 'node.eligibility', 'deployment.start', 'deployment.step', 'deployment.finish', 'drain.start'])

export class CapsuleHost {
  runtime: NodeRuntime | undefined
  runtimeError: string | undefined
  /** This node's capsule subnet (bridge mode); undefined on a rootless node. */
  subnet: string | undefined
  private bridgeError: string | undefined
  scheduler!: Scheduler
  supervisor!: Supervisor
  private rollouts: RolloutDriver | undefined // rollouts and drains, driven while this node leads

  constructor (private readonly o: CapsuleHostInit) {}

  async start (): Promise<void> {
    const o = this.o
    const rootless = process.getuid?.() !== 0
    if (!rootless) {
      try {
        this.subnet = await chooseSubnet(o.config.network, o.dataDir, o.self, o.members())
      } catch (err) {
        this.bridgeError = (err as Error).message
        o.log.warn(this.bridgeError)
      }
    }
    // Announced even without a bridge: the scheduler takes dynamic ports from this node's range.
    o.announceNetwork({ subnet: this.subnet ?? '', ports: [o.config.network.port_range[0], o.config.network.port_range[1]] })
    try {
      this.runtime = await createRuntime({
        dataDir: join(o.dataDir, 'runtime'),
        runtime: o.config.runtime.oci_runtime,
        allowGaming: o.config.capsules.allow_gaming,
        onError: (what, capsule, err) => {
          // What was not made ahead only costs the next start its own mkfifo or mount: a warning.
          o.log[what === 'spare' ? 'warn' : 'error']({ capsule, err: err.message }, RUNTIME_FAILURES[what])
        },
        volumeRoots: o.config.capsules.volume_roots,
        ...(o.hostRoot !== undefined ? { hostRoot: o.hostRoot } : {}),
        ...(this.subnet !== undefined ? { bridge: { name: o.config.network.bridge, subnet: this.subnet } } : {})
      })
      const rec = this.runtime.lastRecovery
      if (rec?.networkError !== undefined) o.log.warn({ err: rec.networkError }, 'capsule networks not reconciled at start (left namespaces or forwards stay until the next start)')
      if (rec !== undefined && rec.orphansRemoved.length > 0) o.log.info({ removed: rec.orphansRemoved }, 'removed what capsules left')
    } catch (err) {
      this.runtimeError = `no usable OCI runtime on this node: ${(err as Error).message}`
      o.log.warn(this.runtimeError)
    }
    this.scheduler = new Scheduler({
      isLeader: () => o.raft.status().role === 'leader',
      capsules: () => o.raft.state.capsules,
      nodes: () => o.members().map((m): SchedulerNode => ({
        id: m.id,
        state: m.state,
        cpus: m.resources.cpus,
        memoryBytes: m.resources.memoryBytes,
        gpus: m.resources.gpus,
        labels: m.labels,
        allowHostNetwork: m.capsules?.allowHostNetwork === true,
        allowGaming: m.capsules?.allowGaming === true,
        portRange: m.network?.ports
      })),
      write: async (cmd, signal) => await o.raft.write(cmd, signal),
      deadGraceMs: o.config.raft.dead_voter_grace_ms,
      log: o.log.child({ part: 'scheduler' })
    })
    this.supervisor = new Supervisor({
      self: o.self,
      capsules: () => o.raft.state.capsules,
      write: async (cmd, signal) => await o.raft.write(cmd, signal),
      runtime: this.runtime,
      allowHostNetwork: o.config.capsules.allow_host_network,
      ...(this.runtimeError !== undefined ? { runtimeError: this.runtimeError } : {}),
      images: { prepare: async (ref, signal) => await o.content.prepareForRuntime(this.runtime as NodeRuntime, ref, signal) },
      bridgeRefusal: () => this.bridgeError ?? (this.subnet !== undefined ? subnetConflict(this.subnet, o.self, o.members()) : undefined),
      // A bridge capsule's checks go to its own address on the bridge; others to loopback.
      ...(this.runtime !== undefined ? { fence: async (name: string, graceMs: number) => { await this.fenceKeeper(o).arm(name, graceMs) } } : {}),
      // Unreadable bridge records: probe loopback; a wrong address shows as a failing check, not silence.
      probeAddress: async (runtimeName) => (await this.runtime?.bridge?.records().catch(() => []))?.find(r => r.name === runtimeName)?.address ?? '127.0.0.1',
      log: o.log.child({ part: 'supervisor' })
    })
    this.rollouts = new RolloutDriver({ isLeader: () => o.raft.status().role === 'leader', capsules: () => o.raft.state.capsules, rollouts: () => o.raft.state.rollouts, write: async (cmd, signal) => await o.raft.write(cmd, signal), log: o.log.child({ part: 'rollouts' }) })
    o.raft.state.onApply((cmd, result) => {
      this.supervisor.applied(cmd, result.ok)
      if (SCHEDULER_OPS.has(cmd.op)) this.scheduler.kick()
      if (cmd.op === 'capsule.report' || cmd.op === 'instance.health' || cmd.op.startsWith('drain.') || cmd.op.startsWith('deployment.')) this.rollouts?.kick()
    })
    await o.libp2p.handle(LOGS_PROTOCOL, o.guard(logsHandler((instance, q, signal) => this.localLogs(instance, q, signal))), { maxInboundStreams: 32 })
    await o.libp2p.handle(EXEC_PROTOCOL, o.guard(execHandler(async (req, signal) => await this.localExec(req.instance, req.argv, req.timeoutMs, signal))), { maxInboundStreams: 16 })
    this.scheduler.start()
    this.supervisor.start()
    this.rollouts.start()
  }

  private fence: FenceKeeper | undefined
  /** The lease renewer, started when the first fenced capsule runs here. */
  private fenceKeeper (o: CapsuleHostInit): FenceKeeper {
    if (this.fence === undefined) {
      const rt = this.runtime as NodeRuntime
      this.fence = new FenceKeeper({
        dir: join(o.dataDir, 'runtime'),
        connected: () => { const l = o.raft.status().leader; return l !== null && (l === o.self || o.members().some(m => m.id === l && m.state === 'alive')) },
        runtimeArgv: (args) => rt.runtimeArgv(args),
        log: o.log
      })
      this.fence.start()
    }
    return this.fence
  }

  /**
   * Calls `fn` with where capsules on this node send DNS queries (their
   * resolv.conf's first nameserver: the bridge's address, port 53) once the
   * bridge is up, now if it is, and before the capsule that brings it up
   * attaches. Never on a node without a bridge (rootless, or a bad subnet).
   */
  async onBridgeReady (fn: (listen: string) => Promise<void>): Promise<void> {
    const bridge = this.runtime?.bridge
    if (bridge === undefined) return
    await bridge.onReady(async () => { await fn(`${bridge.gateway}:${BRIDGE_DNS_PORT}`) })
  }

  /**
   * `leave`: move this node's instances elsewhere (each replacement healthy
   * before its old run stops, until `deadlineMs`), then stop the supervisor
   * and every capsule here, so nothing keeps running on a node that left.
   */
  async drainAndStopLocal (deadlineMs: number): Promise<void> {
    const o = this.o
    await drainBeforeLeave({ self: o.self, members: o.members, capsules: () => o.raft.state.capsules, rollouts: () => o.raft.state.rollouts, write: async (cmd, signal) => await o.raft.write(cmd, signal) }, deadlineMs)
      .catch((err: Error) => { o.log.warn({ err: err.message }, 'leave: drain incomplete; stopping the capsules here anyway') })
    await this.supervisor?.stop().catch((err: Error) => { o.log.warn({ err: err.message }, 'leave: supervisor did not stop cleanly') })
    await this.removeAllLocal()
  }

  /** Stops and removes every capsule on this node, then its bridge and nft table (an ephemeral dev agent leaves nothing behind). */
  async removeAllLocal (): Promise<void> {
    const rt = this.runtime
    if (rt === undefined) return
    for (const c of await rt.list().catch((err: Error) => { this.o.log.warn({ err: err.message }, 'cannot list the capsules here to remove them'); return [] })) {
      await rt.stop(c.name, { timeoutMs: 3000 }).catch(() => undefined) // a failed stop is caught by the forced remove below
      await rt.remove(c.name, { force: true }).catch((err: Error) => { this.o.log.warn({ capsule: c.name, err: err.message }, 'cannot remove a capsule; it may still run') })
    }
    await rt.bridge?.reconcile(new Set()).catch(err => { this.o.log.warn({ err: (err as Error).message }, 'cannot clean capsule networks') })
    await rt.bridge?.destroy().catch(err => { this.o.log.warn({ err: (err as Error).message }, 'cannot remove the capsule bridge') })
  }

  async stop (): Promise<void> {
    this.fence?.stop()
    this.rollouts?.stop()
    this.scheduler?.stop()
    await this.supervisor?.stop()
    await this.o.libp2p.unhandle(LOGS_PROTOCOL).catch(() => {}) // best-effort on stop: libp2p is stopping too
    await this.o.libp2p.unhandle(EXEC_PROTOCOL).catch(() => {}) // best-effort on stop: libp2p is stopping too
    await this.runtime?.close().catch((err: Error) => { this.o.log.warn({ err: err.message }, 'capsule runtime did not close cleanly') })
  }

  ps (): PsRecord[] {
    const out: PsRecord[] = []
    const members = new Map(this.o.members().map(m => [m.id, m]))
    for (const c of this.o.raft.state.capsules.list()) {
      for (const i of c.instances) {
        const m = i.node !== null ? members.get(i.node) : undefined
        out.push({
          name: i.name,
          capsule: c.spec.name,
          image: c.spec.image,
          node: i.node,
          nodeName: m?.name ?? null,
          address: m !== undefined ? nodeAddress(m.addrs) : null,
          ports: i.ports,
          network: c.spec.network ?? 'bridge',
          health: i.state === 'running' ? i.health ?? null : null,
          state: i.state,
          reason: i.reason,
          exitCode: i.exitCode,
          restarts: i.restarts
        })
      }
    }
    return out.sort((a, b) => a.name < b.name ? -1 : 1)
  }

  private async * localLogs (instance: string, q: LogsQuery, signal: AbortSignal): AsyncIterable<LogLine> {
    const rtName = this.supervisor.runtimeNameFor(instance)
    if (rtName === undefined || this.runtime === undefined) throw new Error(`${instance} does not run on this node`)
    if (q.previous === true) {
      // The run before the last restart here, or the placement before this one (same node).
      const gen = Number(/\.g(\d+)$/.exec(rtName)?.[1] ?? 0)
      const opts = { ...(q.tail !== undefined ? { tail: q.tail } : {}), ...(q.since !== undefined ? { since: q.since } : {}) }
      const prev = await this.runtime.previousLogs(rtName, opts) ?? await this.runtime.previousLogs(runtimeNameOf(instance, gen - 1), opts)
      if (prev === undefined) throw new Error(`${instance} has no previous run on this node`)
      for await (const r of prev) yield { stream: r.stream === 'stderr' ? 'stderr' : 'stdout', time: r.time, line: r.line }
      return
    }
    for await (const r of this.runtime.logs(rtName, { follow: q.follow, signal, ...(q.tail !== undefined ? { tail: q.tail } : {}), ...(q.since !== undefined ? { since: q.since } : {}) })) {
      yield { stream: r.stream === 'stderr' ? 'stderr' : 'stdout', time: r.time, line: r.line }
    }
  }

  private async localExec (instance: string, argv: string[], timeoutMs: number, signal: AbortSignal): Promise<ExecOutcome> {
    const rtName = this.supervisor.runtimeNameFor(instance)
    if (rtName === undefined || this.runtime === undefined) throw new Error(`${instance} does not run on this node`)
    return await this.runtime.exec(rtName, argv, { timeoutMs, signal })
  }

  /** The instance NAME names: itself, or the first running one of the capsule NAME (or `instance` of it). */
  private pick (name: string, instance: string | undefined): { capsule: CapsuleRecord, instance: CapsuleRecord['instances'][number] } {
    const table = this.o.raft.state.capsules
    const direct = instance === undefined ? table.instance(name) : undefined
    if (direct !== undefined) return direct
    const c = table.get(name)
    if (c === undefined) throw new ApiError(404, `no capsule or instance named ${name}`)
    const i = instance !== undefined
      ? c.instances.find(x => x.name === instance || String(x.index) === instance)
      : c.instances.find(x => x.state === 'running') ?? c.instances[0]
    if (i === undefined) throw new ApiError(404, `${name} has no instance ${instance ?? ''} (see bolt-agent inspect ${name})`)
    return { capsule: c, instance: i }
  }

  /** Runs argv inside an instance, on whichever node runs it. */
  async exec (name: string, instance: string | undefined, argv: string[], timeoutMs: number, signal: AbortSignal): Promise<ExecOutcome> {
    const f = this.pick(name, instance)
    const node = f.instance.node
    if (node === null || f.instance.state !== 'running') throw new ApiError(409, `${f.instance.name} is not running (${f.instance.reason ?? f.instance.state})`)
    if (node === this.o.self) return await this.localExec(f.instance.name, argv, timeoutMs, signal)
    const stream = await this.o.openStream(node, EXEC_PROTOCOL, AbortSignal.any([signal, AbortSignal.timeout(10_000)]))
    return await execRemote(stream, { instance: f.instance.name, argv, timeoutMs }, AbortSignal.any([signal, AbortSignal.timeout(timeoutMs + 10_000)]))
  }

  /** `inspect`: the spec and each instance with its node's address, ports, health and last exit. */
  inspect (name: string): Record<string, unknown> {
    const c = this.o.raft.state.capsules.get(name) ?? this.o.raft.state.capsules.instance(name)?.capsule
    if (c === undefined) throw new ApiError(404, `no capsule or instance named ${name}`)
    const members = new Map(this.o.members().map(m => [m.id, m]))
    return {
      name: c.spec.name,
      desired: c.desired,
      spec: c.spec,
      instances: c.instances.map(i => {
        const m = i.node !== null ? members.get(i.node) : undefined
        return { name: i.name, node: i.node, nodeName: m?.name ?? null, address: m !== undefined ? nodeAddress(m.addrs) : null, ports: i.ports ?? [], health: i.state === 'running' ? i.health ?? null : null, state: i.state, reason: i.reason, exitCode: i.exitCode, restarts: i.restarts, generation: i.generation, ...this.supervisor.startTraceOf(i) }
      })
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
      const h = parsed.data.health?.check
      if (h?.kind === 'http' && h.port === undefined && !parsed.data.ports.some(p => p.proto === 'tcp')) {
        throw new ApiError(400, `--check http:${h.path} has no port to reach: write http:PORT${h.path}, or publish a tcp port`)
      }
      const r = await raft.write({ op: 'capsule.create', spec: parsed.data }, req.signal)
      if (!r.ok) throw new ApiError(409, r.reason)
      if (req.query.get('wait') === 'placed') return await submitAnswer({ get: (n) => raft.state.capsules.get(n), onApply: (l) => raft.state.onApply(l) }, parsed.data.name, req.query, req.signal)
      return raft.state.capsules.get(parsed.data.name) satisfies CapsuleRecord | undefined
    })
    api.route('GET', '/v1/capsules', async (req, res) => {
      await freshOrStale(async (sig) => { await raft.node.readIndex(sig) }, req.signal, res, this.o.log)
      return this.ps()
    })
    api.route('GET', '/v1/capsules/:name', async (req, res) => {
      await freshOrStale(async (sig) => { await raft.node.readIndex(sig) }, req.signal, res, this.o.log)
      return this.inspect(req.params.name ?? '')
    })
    api.route('POST', '/v1/capsules/:name/exec', async (req) => {
      const body = await req.body() as { instance?: unknown }
      const parsed = ExecRequestSchema.omit({ instance: true }).safeParse(body)
      if (!parsed.success) throw new ApiError(400, `bad exec request: ${parsed.error.issues[0]?.path.join('.') ?? ''}: ${parsed.error.issues[0]?.message ?? ''}`)
      const instance = typeof body.instance === 'string' ? body.instance : undefined
      return await this.exec(req.params.name ?? '', instance, parsed.data.argv, parsed.data.timeoutMs, req.signal)
    })
    registerCapsuleOpsRoutes(api, raft, this.o.log)
    registerNodeRoutes(api, raft, this.o.members, this.o.log)
    registerContentOpsRoutes(api, { raft, content: this.o.content, self: this.o.self, runtime: () => this.runtime, log: this.o.log })
    api.route('POST', '/v1/capsules/:name/stop', async (req) => {
      const rec = raft.state.capsules.get(req.params.name ?? '')
      // `stop` of what already ended says so (docker: "is not running"), rather than pretending to stop it.
      if (rec !== undefined && rec.instances.every(i => i.state === 'exited' || i.state === 'failed')) throw new ApiError(409, `${rec.spec.name} is not running (${[...new Set(rec.instances.map(i => i.state))].join(', ')}); bolt-agent restart ${rec.spec.name} runs it again`)
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
      const q = LogsQueryParams.safeParse({ follow: req.query.get('follow') === '1', tail: req.query.get('tail') ?? undefined, since: req.query.get('since') ?? undefined, ...(req.query.get('previous') === '1' ? { previous: true } : {}) })
      if (!q.success) throw new ApiError(400, `bad logs query: ${q.error.issues[0]?.path.join('.') ?? ''}: ${q.error.issues[0]?.message ?? ''}`)
      const lines = this.logs(req.params.name ?? '', q.data, req.signal)
      await streamNdjson(res, lines)
      return undefined
    })
    registerContentRoutes(api, { content: this.o.content, raft, config: this.o.config.objects, log: this.o.log })
  }
}

/** `GET /v1/logs/NAME?follow=1&tail=N&since=MS`. */
const LogsQueryParams = z.object({
  follow: z.boolean(),
  tail: z.coerce.number().int().min(0).max(MAX_TAIL).optional(),
  since: z.coerce.number().finite().optional(),
  previous: z.boolean().optional()
})

export { runtimeNameOf }
