// The supervisor, on every node: reconciles "instances the committed state
// places on me" with what the node runtime actually runs. It pulls the image
// (peers first), starts the capsule, reports pending → pulling → running →
// exited|failed back through Raft, applies the restart policy with back-off,
// and stops whatever runs here that the state no longer places here — so
// after a partition heals, a capsule that was moved elsewhere does not keep
// running twice once this node learns the new placement.
import type { NodeRuntime, CapsuleExit } from '../../native/index.js'
import type { CommandInput, CommandResult } from '../state/cluster-state.js'
import type { CapsuleRecord, CapsuleTable, InstanceRecord } from '../state/capsules.js'
import type { CapsuleSpec, InstanceState } from '../scheduler/spec.js'
import type { Logger } from '../logger.js'
import { watchHealth } from '../services/health-probe.js'
import { HealthReporter } from '../services/health-reports.js'
import { StartTrace } from './start-trace.js'

export const RECONCILE_INTERVAL_MS = 1000
export const MAX_BACKOFF_MS = 5 * 60_000
export const STOP_TIMEOUT_MS = 10_000

export interface ImageSource {
  /** Makes the image runnable here; returns the runtime's image id. */
  prepare: (ref: string, signal: AbortSignal) => Promise<string>
}

export interface SupervisorInit {
  self: string
  capsules: () => CapsuleTable
  write: (cmd: CommandInput, signal?: AbortSignal) => Promise<CommandResult>
  runtime: NodeRuntime | undefined
  /** Why there is no runtime (reported as the failure reason). */
  runtimeError?: string
  images: ImageSource
  /** This node's `[capsules] allow_host_network`: refuse `network = "host"` capsules when false. */
  allowHostNetwork?: boolean
  /** Why bridge capsules must not start on this node now (its subnet overlaps a member's), or undefined. */
  bridgeRefusal?: () => string | undefined
  log: Logger
  /**
   * Where tcp/http health checks reach the capsule with this runtime name.
   * Default 127.0.0.1 (host network); a bridge capsule's own address.
   */
  probeAddress?: (runtimeName: string) => Promise<string>
  /** Arms the fence of a running capsule that must stop when this node is cut off (spec.disconnect). */
  fence?: (runtimeName: string, graceMs: number) => Promise<void>
}

interface Task {
  instance: string
  generation: number
  runtimeName: string
  ac: AbortController
  done: Promise<void>
  /** Set when the health check stopped it (--restart-unhealthy): restart whatever the policy. */
  unhealthyKill?: boolean
  /** The task's reports, in order: one not awaited (pulling) still lands before the next. */
  reports: Promise<void>
}

/** The runtime's name for one placement of an instance: a moved instance gets a new one. */
export function runtimeNameOf (instance: string, generation: number): string {
  return `${instance}.g${generation}`
}

export class Supervisor {
  private readonly tasks = new Map<string, Task>()
  private timer: NodeJS.Timeout | undefined
  private reconciling = false
  private again = false
  private readonly ac = new AbortController()
  readonly health: HealthReporter
  /** When each step of the starts on this node happened (`inspect` shows them). */
  readonly trace = new StartTrace()

  constructor (private readonly o: SupervisorInit) {
    this.health = new HealthReporter({ node: o.self, write: o.write, onError: (err) => { o.log.debug({ err: err.message }, 'health report failed; retrying') } })
  }

  start (): void {
    this.timer = setInterval(() => { this.kick() }, RECONCILE_INTERVAL_MS)
    this.timer.unref()
    this.kick()
  }

  async stop (): Promise<void> {
    this.ac.abort()
    if (this.timer !== undefined) clearInterval(this.timer)
    // Capsules keep running across an agent restart (adopted at the next start); only watchers end.
    for (const t of this.tasks.values()) t.ac.abort()
    await Promise.allSettled([...this.tasks.values()].map(async t => await t.done))
    this.health.stop()
  }

  /**
   * Reacts to a change of the committed state: starts (or stops) what it
   * places here at once, then sweeps orphans in the background. Starting
   * never waits behind a sweep, which lists the runtime's capsules.
   */
  kick (): void {
    if (this.ac.signal.aborted) return
    this.startPass()
    if (this.reconciling) { this.again = true; return }
    this.reconciling = true
    void this.sweep().finally(() => {
      this.reconciling = false
      if (this.again && !this.ac.signal.aborted) { this.again = false; this.kick() }
    })
  }

  /** Called for every command this node applies (`ok`: it took effect): marks start steps, then reacts as kick() does. */
  applied (cmd: CommandInput, ok: boolean): void {
    this.trace.applied(cmd, ok, this.o.self, this.o.capsules())
    if (/^(capsule|deployment|drain)\./.test(cmd.op) || cmd.op === 'node.eligibility') this.kick()
  }

  /** An instance's start steps (epoch ms) when it started on this node: `{ startTrace }` for inspect, else nothing. */
  startTraceOf (i: { name: string, node: string | null, generation: number }): { startTrace?: Record<string, number> } {
    const t = i.node === this.o.self ? this.trace.get(i.name, i.generation) : undefined
    return t === undefined ? {} : { startTrace: t }
  }

  /** Where an instance's output is on this node, if it runs or ran here. */
  runtimeNameFor (instance: string): string | undefined {
    const f = this.o.capsules().instance(instance)
    if (f === undefined || f.instance.node !== this.o.self) return undefined
    return runtimeNameOf(instance, f.instance.generation)
  }

  /** What the committed state places on this node now, and the placements it is leaving (a drain). */
  private placedHere (): { mine: Map<string, { capsule: CapsuleRecord, instance: InstanceRecord }>, leaving: Set<string> } {
    const mine = new Map<string, { capsule: CapsuleRecord, instance: InstanceRecord }>()
    /** Placements moving off this node (a drain): they keep running until their replacement is healthy. */
    const leaving = new Set<string>()
    for (const c of this.o.capsules().list()) {
      for (const i of c.instances) {
        if (i.node === this.o.self) mine.set(runtimeNameOf(i.name, i.generation), { capsule: c, instance: i })
        if (i.previous?.node === this.o.self && c.desired === 'run') leaving.add(runtimeNameOf(i.name, i.previous.generation))
      }
    }
    return { mine, leaving }
  }

  /** Synchronous: starts tasks for what should run here and isn't handled, and cancels those no longer placed here. */
  private startPass (): void {
    const { mine, leaving } = this.placedHere()
    for (const [rtName, { capsule, instance }] of mine) {
      const running = this.tasks.get(rtName)
      if (running !== undefined) {
        if (capsule.desired === 'stop') running.ac.abort()
        continue
      }
      if (capsule.desired === 'stop') {
        if (instance.state === 'running' || instance.state === 'pulling' || instance.state === 'pending') this.spawn(rtName, capsule, instance, 'stop')
        continue
      }
      if (instance.state === 'pending' || instance.state === 'pulling' || instance.state === 'running') this.spawn(rtName, capsule, instance, 'run')
    }
    // Stop and remove what runs here but is no longer placed here.
    for (const [rtName, task] of this.tasks) {
      if (!mine.has(rtName) && !leaving.has(rtName)) task.ac.abort()
    }
  }

  /** Removes what the runtime runs here that no placement claims, and kept output of gone instances. */
  private async sweep (): Promise<void> {
    if (this.ac.signal.aborted) return
    const rt = this.o.runtime
    if (rt === undefined) return
    // Output kept for `logs --previous` lives as long as its instance is placed here.
    const table = this.o.capsules()
    // Optional calls: runtimes that keep no output (test doubles) lack them.
    await Promise.resolve(rt.prunePreviousLogs?.(n => table.instance(n.replace(/\.g\d+$/, ''))?.instance.node === this.o.self)).catch((err: Error) => { this.o.log.warn({ err: err.message }, 'supervisor: cannot prune kept output of gone instances') })
    let local: Awaited<ReturnType<NodeRuntime['list']>> = []
    try { local = await rt.list() } catch (err) { this.o.log.warn({ err: (err as Error).message }, 'supervisor: cannot list local capsules; orphans stay until a later pass'); return }
    const { mine, leaving } = this.placedHere()
    for (const s of local) {
      if (mine.has(s.name) || this.tasks.has(s.name) || leaving.has(s.name)) continue
      this.o.log.info({ capsule: s.name }, 'supervisor: stopping a capsule no longer placed here')
      await rt.stop(s.name, { timeoutMs: STOP_TIMEOUT_MS }).catch(this.logRuntime(s.name, 'stop'))
      await rt.remove(s.name, { force: true }).catch(this.logRuntime(s.name, 'remove'))
    }
  }

  /** A catch handler for best-effort runtime calls: "not on this node" is expected and quiet; anything else is logged with the capsule. */
  private logRuntime (capsule: string, what: string): (err: Error) => undefined {
    return (err) => {
      if (err.name !== 'CapsuleNotFoundError') this.o.log.warn({ capsule, err: err.message }, `supervisor: cannot ${what} the capsule`)
      return undefined
    }
  }

  private spawn (rtName: string, capsule: CapsuleRecord, instance: InstanceRecord, mode: 'run' | 'stop'): void {
    const ac = new AbortController()
    const task: Task = { instance: instance.name, generation: instance.generation, runtimeName: rtName, ac, done: Promise.resolve(), reports: Promise.resolve() }
    this.tasks.set(rtName, task)
    if (mode === 'run') this.trace.mark(instance.name, instance.generation, 'supervisor')
    task.done = (mode === 'run' ? this.runInstance(task, capsule, instance) : this.stopInstance(task, instance))
      .catch(err => { this.o.log.warn({ capsule: rtName, err: (err as Error).message }, 'supervisor task failed') })
      .finally(() => { this.tasks.delete(rtName); this.kick() })
  }

  /** Reports the instance's state through Raft after the task's earlier reports; a failure is logged, never thrown. */
  private async report (task: Task, state: InstanceState, fields: { exitCode?: number | null, reason?: string | null, restarts: number }): Promise<void> {
    const cmd: CommandInput = {
      op: 'capsule.report', instance: task.instance, node: this.o.self, generation: task.generation,
      state, exitCode: fields.exitCode ?? null, reason: fields.reason ?? null, restarts: fields.restarts
    }
    task.reports = task.reports.then(async () => {
      await this.o.write(cmd, this.ac.signal).catch(err => { this.o.log.debug({ err: (err as Error).message }, 'report failed') })
    })
    await task.reports
  }

  private async stopInstance (task: Task, instance: InstanceRecord): Promise<void> {
    const rt = this.o.runtime
    let exitCode: number | null = instance.exitCode
    if (rt !== undefined) {
      const exit = await rt.stop(task.runtimeName, { timeoutMs: STOP_TIMEOUT_MS }).catch(this.logRuntime(task.runtimeName, 'stop'))
      if (exit !== undefined) exitCode = exit.exitCode
    }
    await this.report(task, 'exited', { exitCode, reason: 'stopped', restarts: instance.restarts })
  }

  private async runInstance (task: Task, capsule: CapsuleRecord, instance: InstanceRecord): Promise<void> {
    const rt = this.o.runtime
    const spec = capsule.spec
    let restarts = instance.restarts
    // The last exit code stays visible in ps while an instance restarts (as docker shows it).
    let lastExit: number | null = instance.exitCode
    if (rt === undefined) {
      await this.report(task, 'failed', { reason: this.o.runtimeError ?? 'no OCI runtime on this node', restarts })
      return
    }
    const signal = AbortSignal.any([task.ac.signal, this.ac.signal])
    const existing = await rt.state(task.runtimeName).catch(this.logRuntime(task.runtimeName, 'read the state of')) // not here (usual): start it
    for (;;) {
      let exit: CapsuleExit
      if (existing !== undefined && existing.status !== 'exited' && restarts === instance.restarts) {
        // Adopted after an agent restart: watch it rather than start it again.
        if (instance.state !== 'running') await this.report(task, 'running', { restarts, exitCode: lastExit })
        await this.armFence(task, spec)
        exit = await this.waitOrStop(rt, task, signal, spec, instance)
      } else {
        if (existing !== undefined || restarts > instance.restarts) {
          // The run before a restart stays readable: `logs --previous`.
          await Promise.resolve(rt.keepLogs?.(task.runtimeName)).catch(this.logRuntime(task.runtimeName, 'keep the output of'))
          await rt.remove(task.runtimeName, { force: true }).catch(this.logRuntime(task.runtimeName, 'remove'))
        }
        if (spec.network === 'host' && this.o.allowHostNetwork !== true) {
          // Defence in depth: the scheduler places such capsules only on nodes that allow them.
          await this.report(task, 'failed', { reason: 'this node does not allow host networking (set [capsules] allow_host_network = true in its config)', restarts })
          return
        }
        // Not awaited: the image is prepared while the report commits (reports stay in order).
        void this.report(task, 'pulling', { restarts, exitCode: lastExit })
        let imageId: string
        try {
          imageId = await this.o.images.prepare(spec.image, signal)
          this.trace.mark(task.instance, task.generation, 'imageReady')
        } catch (err) {
          if (signal.aborted) return
          await this.report(task, 'failed', { reason: `image pull failed: ${(err as Error).message}`, restarts })
          return
        }
        const netMode = spec.network ?? 'bridge'
        const refusal = netMode === 'bridge' ? this.o.bridgeRefusal?.() : undefined
        if (refusal !== undefined) {
          await this.report(task, 'failed', { reason: refusal, restarts })
          return
        }
        try {
          await rt.run({
            name: task.runtimeName,
            image: imageId,
            ...(spec.args.length > 0 ? { args: spec.args } : {}),
            ...(spec.entrypoint !== undefined ? { entrypoint: spec.entrypoint } : {}),
            ...(spec.workdir !== undefined ? { cwd: spec.workdir } : {}),
            ...(spec.user !== undefined ? { user: spec.user } : {}),
            env: spec.env,
            resources: { ...(spec.resources.cpu > 0 ? { cpus: spec.resources.cpu } : {}), ...(spec.resources.memoryBytes >= 4 * 1024 * 1024 ? { memoryBytes: spec.resources.memoryBytes } : {}) },
            ...(spec.resources.gpus.count > 0 ? { gpus: spec.resources.gpus.count } : {}),
            ...(spec.gaming ? { gaming: true } : {}),
            volumes: spec.volumes.map(v => ({ hostPath: v.host, containerPath: v.target, readOnly: v.readOnly })),
            labels: { 'bolt.capsule': spec.name, 'bolt.instance': instance.name },
            network: netMode === 'bridge' ? { bridge: { ports: instance.ports } } : netMode === 'host' ? 'host' : 'private'
          }, { onStep: (step) => { this.trace.mark(task.instance, task.generation, step) } })
        } catch (err) {
          await this.report(task, 'failed', { reason: `start failed: ${(err as Error).message}`, restarts })
          return
        }
        await this.report(task, 'running', { restarts, exitCode: lastExit })
        this.trace.mark(task.instance, task.generation, 'reported')
        await this.armFence(task, spec)
        exit = await this.waitOrStop(rt, task, signal, spec, instance)
      }
      if (signal.aborted) return
      lastExit = exit.exitCode
      const unhealthy = task.unhealthyKill === true
      task.unhealthyKill = false
      const failed = exit.exitCode !== 0 || exit.oomKilled || unhealthy
      const reason = unhealthy ? 'unhealthy' : exit.oomKilled ? 'OOM-killed' : failed ? `exit code ${exit.exitCode}` : null
      const policy = spec.restart.policy
      const restart = (policy === 'always' || (policy === 'on-failure' && failed) || unhealthy) && restarts < spec.restart.maxRetries
      if (!restart) {
        await this.report(task, failed ? 'failed' : 'exited', { exitCode: exit.exitCode, reason, restarts })
        return
      }
      const backoff = Math.min(MAX_BACKOFF_MS, spec.restart.backoffMs * 2 ** restarts)
      this.o.log.info({ capsule: task.runtimeName, exitCode: exit.exitCode, backoffMs: backoff }, 'supervisor: restarting')
      await this.report(task, 'pending', { exitCode: exit.exitCode, reason: `${reason ?? 'exited'}; restarting in ${backoff} ms`, restarts })
      await sleep(backoff, signal)
      if (signal.aborted) return
      restarts++
    }
  }

  private async armFence (task: Task, spec: CapsuleSpec): Promise<void> {
    const grace = spec.disconnect?.stopAfterMs
    if (grace === undefined || this.o.fence === undefined) return
    await this.o.fence(task.runtimeName, grace).catch((err: Error) => { this.o.log.warn({ capsule: task.runtimeName, err: err.message }, 'cannot arm the fence: this capsule will keep running if the node is cut off') })
  }

  /**
   * Waits for the capsule to exit, probing its health meanwhile; if the task
   * is cancelled (moved, removed), stops and removes it.
   */
  private async waitOrStop (rt: NodeRuntime, task: Task, signal: AbortSignal, spec: CapsuleSpec, instance: InstanceRecord): Promise<CapsuleExit> {
    const probing = new AbortController()
    const watching = this.watchHealth(rt, task, spec, instance, AbortSignal.any([signal, probing.signal]))
    try {
      return await this.waitOrStopInner(rt, task, signal)
    } finally {
      probing.abort()
      await watching
    }
  }

  private async watchHealth (rt: NodeRuntime, task: Task, spec: CapsuleSpec, instance: InstanceRecord, signal: AbortSignal): Promise<void> {
    const h = spec.health
    if (h === undefined) return
    const tcp = (instance.ports ?? []).find(p => p.proto === 'tcp')?.container ?? (spec.ports ?? []).find(p => p.proto === 'tcp')?.container
    const target = {
      address: (await this.o.probeAddress?.(task.runtimeName)) ?? '127.0.0.1',
      httpPort: tcp,
      exec: async (argv: string[], o: { timeoutMs: number, signal: AbortSignal }) => await rt.exec(task.runtimeName, argv, o)
    }
    await watchHealth(h, target, (state, detail) => {
      this.o.log.info({ instance: task.instance, health: state, detail }, 'supervisor: health changed')
      this.health.report(task.instance, task.generation, state)
      if (state === 'unhealthy' && h.restartUnhealthy && !signal.aborted) {
        task.unhealthyKill = true
        void rt.stop(task.runtimeName, { timeoutMs: STOP_TIMEOUT_MS }).catch((err: Error) => { this.o.log.warn({ instance: task.instance, err: err.message }, 'cannot stop an unhealthy instance') })
      }
    }, signal).catch((err: Error) => { this.o.log.warn({ instance: task.instance, err: err.message }, 'health probe stopped') })
  }

  private async waitOrStopInner (rt: NodeRuntime, task: Task, signal: AbortSignal): Promise<CapsuleExit> {
    const waiting = rt.wait(task.runtimeName)
    const aborted = new Promise<'aborted'>(resolve => {
      if (signal.aborted) resolve('aborted')
      signal.addEventListener('abort', () => resolve('aborted'), { once: true })
    })
    const first = await Promise.race([waiting, aborted])
    if (first !== 'aborted') return first
    if (!this.ac.signal.aborted) {
      // The state no longer places this here: stop it and free its resources.
      const exit = await rt.stop(task.runtimeName, { timeoutMs: STOP_TIMEOUT_MS }).catch(this.logRuntime(task.runtimeName, 'stop'))
      // Placed afresh (restart, update, drain): the next generation's `logs --previous` reads this run.
      await Promise.resolve(rt.keepLogs?.(task.runtimeName)).catch(this.logRuntime(task.runtimeName, 'keep the output of'))
      await rt.remove(task.runtimeName, { force: true }).catch(this.logRuntime(task.runtimeName, 'remove'))
      return exit ?? { exitCode: 137, reason: 'stopped', oomKilled: false, finishedAt: Date.now() }
    }
    return { exitCode: 0, reason: 'stopped', oomKilled: false, finishedAt: Date.now() }
  }
}

function sleep (ms: number, signal: AbortSignal): Promise<void> {
  return new Promise(resolve => {
    const t = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true })
  })
}
