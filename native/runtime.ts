// NodeRuntime: runs capsules on this node. Images become rootfs dirs, specs
// become OCI bundles, and an OCI runtime (runc or crun) runs them under a
// detached waiter, so capsules survive an agent crash and are adopted (or
// cleaned up) when the agent comes back.
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { capsuleBundleConfig } from './bundle/capsule-bundle.js'
import type { OciSpec } from './bundle/oci-spec.js'
import { CapsuleProcess, collectRest, isWaiterAlive, PendingWaiter, readExitCode, waitForStart, WAITER_SCRIPT } from './capsule-process.js'
import { StartPools } from './start-pools.js'
import { readRecord, writeRecord, type CapsuleExit, type CapsuleRecord } from './capsule-state.js'
import { CapsuleCgroup, cgroupPrefixOf, type CgroupStats } from './cgroups.js'
import { CapsuleExistsError, CapsuleNotFoundError, CapsuleStateError, GamingNotAllowedError, ImageLayoutError, NetworkUnsupportedError } from './errors.js'
import type { BridgeNetwork } from './net/bridge.js'
import { PreviousLogs } from './previous-logs.js'
import type { CapsuleHandle, CapsuleState, NodeRuntimeDeps, RecoveryReport, RunHooks } from './runtime-types.js'
import { DeviceGrants } from './gpu/device-grants.js'
import { exitOf, releaseCapsule, removeOrphans } from './capsule-end.js'
import { readLogs, RotatingLogWriter, type LogRecord } from './logs.js'
import type { ExecResult } from './oci/driver.js'
import type { PreparedImage } from './image/store.js'
import { parseRunSpec, type CapsuleRunSpec, type CapsuleRunSpecInput } from './spec.js'

export type { CapsuleHandle, CapsuleState, CapsuleStatus, DeviceProvider, NodeRuntimeDeps, RecoveryReport, RunHooks, RunStep } from './runtime-types.js'

export const DEFAULT_STOP_TIMEOUT_MS = 10_000
export const LOG_FILE = 'capsule.log'

interface Live {
  record: CapsuleRecord
  dir: string
  log: RotatingLogWriter
  proc?: CapsuleProcess
  exited: Promise<CapsuleExit>
  /** Set when the capsule has exited and its resources are being freed. */
  released?: Promise<void>
  devices: string[]
}

export class NodeRuntime {
  private readonly capsulesDir: string
  private readonly live = new Map<string, Live>()
  /** Cgroup paths are per data dir, so several agents on one host never touch each other's. */
  private readonly cgroupPrefix: string
  private closed = false
  private readonly previous: PreviousLogs
  private readonly grants: DeviceGrants
  /** Shells, FIFO pairs and rootfs made ahead, so a start forks nothing from the agent. */
  private readonly pools: StartPools

  constructor (private readonly deps: NodeRuntimeDeps) {
    this.capsulesDir = join(resolve(deps.dataDir), 'capsules')
    this.grants = new DeviceGrants(deps.devices)
    this.previous = new PreviousLogs(join(resolve(deps.dataDir), 'previous-logs'), (name, err) => { deps.onError?.('keep-logs', name, err) })
    this.cgroupPrefix = cgroupPrefixOf(deps.dataDir)
    this.pools = new StartPools(resolve(deps.dataDir), WAITER_SCRIPT, deps.images, (err) => { deps.onError?.('spare', '(start pools)', err) })
  }

  get runtimeName (): string {
    return this.deps.driver.name
  }

  /** The command line that runs this node's OCI runtime with `args` (for a helper that must outlive the agent). */
  runtimeArgv (args: string[]): string[] {
    return this.deps.driver.argv(args)
  }

  async init (): Promise<void> {
    await mkdir(this.capsulesDir, { recursive: true, mode: 0o700 })
    await this.pools.init()
  }

  /** Prepares an image from an OCI layout on disk; returns its id for `run`. */
  async prepareImage (layoutDir: string, ref: string, signal?: AbortSignal): Promise<PreparedImage> {
    return await this.deps.images.prepare(layoutDir, ref, signal)
  }

  async listImages (): Promise<PreparedImage[]> {
    return await this.deps.images.list()
  }

  /** Deletes a prepared image (and layers only it used); refused while a capsule that is not removed uses it. */
  async removeImage (id: string): Promise<boolean> {
    const users = [...this.live.values()].filter(l => l.record.image === id).map(l => l.record.name)
    if (users.length > 0) throw new CapsuleStateError(`image ${id} is used by capsule(s) ${users.join(', ')}: remove them first`)
    await this.pools.spares.drop(id)
    return await this.deps.images.remove(id)
  }

  /** A capsule whose CPU limit cannot be set does not run unlimited: it is removed and the start fails. */
  private async limitCpuOrRemove (name: string, cg: CapsuleCgroup, cpus: number): Promise<void> {
    try {
      await cg.limitCpu(cpus)
    } catch (err) {
      await this.remove(name, { force: true }).catch((rerr: Error) => { this.deps.onError?.('release', name, rerr) })
      throw new CapsuleStateError(`capsule ${name}: could not set its CPU limit (${cpus} CPUs): ${(err as Error).message}`)
    }
  }

  private cgroupFor (name: string): CapsuleCgroup | undefined {
    if (this.deps.rootless !== undefined || this.deps.cgroups.mode === 'none') return undefined
    return new CapsuleCgroup(this.deps.cgroups, `${this.cgroupPrefix}/${name}`)
  }

  /** Devices held by capsules that have not exited. */
  private * devicesHeld (): Iterable<string> {
    for (const l of this.live.values()) if (l.record.status !== 'exited') yield * l.devices
  }

  /** Builds the bundle and starts the capsule; resolves once its init runs (its pid file is written). */
  async run (input: CapsuleRunSpecInput, hooks: RunHooks = {}): Promise<CapsuleHandle> {
    if (this.closed) throw new CapsuleStateError('the runtime is closed')
    this.pools.begin()
    try {
      return await this.start(input, hooks)
    } finally {
      this.pools.end()
    }
  }

  private async start (input: CapsuleRunSpecInput, hooks: RunHooks): Promise<CapsuleHandle> {
    const spec = parseRunSpec(input)
    if (spec.gaming !== undefined && spec.gaming !== false && this.deps.allowGaming !== true) {
      // Defence in depth: the scheduler places gaming capsules only on nodes that allow them.
      throw new GamingNotAllowedError(`capsule ${spec.name} asks for the gaming profile (this node's input and sound devices), which this node does not allow (set [capsules] allow_gaming = true on a machine set aside for games)`)
    }
    if (this.live.has(spec.name)) throw new CapsuleExistsError(`capsule ${spec.name} already exists on this node (remove it first)`)
    const image = await this.deps.images.get(spec.image)
    if (image === undefined) throw new ImageLayoutError(`image ${spec.image} is not prepared on this node (call prepareImage first)`)
    const dir = join(this.capsulesDir, spec.name)
    try {
      await mkdir(dir, { mode: 0o700 })
    } catch {
      throw new CapsuleExistsError(`capsule ${spec.name} already has a directory at ${dir} (remove it first)`)
    }
    // A spare rootfs, mounted ahead, takes the place of the empty dir just made.
    const spared = await this.pools.spares.take(image, dir, (err) => { this.deps.onError?.('spare', spec.name, err) })
    const cg = this.cgroupFor(spec.name)
    const record: CapsuleRecord = {
      name: spec.name,
      image: spec.image,
      runtime: this.deps.driver.name,
      createdAt: Date.now(),
      waiterPid: null,
      cgroup: cg?.relPath ?? null,
      log: { maxBytes: spec.log.maxBytes ?? this.deps.log.maxBytes, maxFiles: spec.log.maxFiles ?? this.deps.log.maxFiles },
      status: 'starting',
      stopRequested: false,
      devices: [],
      exit: null
    }
    let devices: string[] = []
    let waiter: PendingWaiter | undefined
    try {
      waiter = new PendingWaiter(dir, this.deps.driver.runArgv(spec.name, dir, join(dir, 'pid')), this.pools.shells)
      const log = this.logWriter(spec.name, dir, record.log)
      // Independent steps run side by side: the rootfs mount and mkfifo are process spawns.
      const rootfsPath = join(dir, 'rootfs')
      const steps = await Promise.allSettled([
        // The first record need only be there before the capsule runs: an agent that crashes
        // before it is written leaves a dir without one, which recover() frees (mount, cgroup, network) and removes.
        writeRecord(dir, record),
        spared ? undefined : this.deps.images.createRootfs(image, dir, this.pools.shells.run),
        this.pools.fifos.take(dir, this.pools.shells.run),
        cg?.create(spec.resources.memoryBytes),
        log.open(),
        (async () => {
          const config = await capsuleBundleConfig({
            spec: await this.attachNetwork(spec),
            image: image.config,
            dir,
            rootfs: rootfsPath,
            ...(cg !== undefined ? { cgroupsPath: cg.leafPath } : {}),
            cgroupNamespace: this.deps.cgroups.mode === 'v2',
            ...(this.deps.rootless !== undefined ? { rootless: this.deps.rootless } : {}),
            volumeRoots: this.deps.volumeRoots
          })
          devices = await this.grants.apply(config, spec, () => this.devicesHeld())
          await writeFile(join(dir, 'config.json'), JSON.stringify(config))
        })()
      ])
      const failed = steps.find(r => r.status === 'rejected')
      if (failed !== undefined) {
        if (!log.isClosed) await log.close().catch(() => undefined) // the failed step is what gets thrown; the log is discarded with the dir
        throw failed.reason as Error
      }
      hooks.onStep?.('bundleReady')
      const proc = await CapsuleProcess.launch(dir, waiter, log)
      hooks.onStep?.('launched')
      waiter = undefined
      record.waiterPid = proc.waiterPid ?? null
      record.status = 'running'
      record.devices = devices
      await writeRecord(dir, record)
      const live: Live = { record, dir, log, proc, devices, exited: Promise.resolve() as unknown as Promise<CapsuleExit> }
      live.exited = this.track(live, proc)
      this.live.set(spec.name, live)
      await waitForStart(dir, live.exited)
      hooks.onStep?.('started')
      // Only now: the OCI runtime's setup ran in this cgroup unthrottled (see BundleInput.cpuOnParent).
      if (cg !== undefined && spec.resources.cpus !== undefined) await this.limitCpuOrRemove(spec.name, cg, spec.resources.cpus)
      return { name: spec.name, exited: live.exited }
    } catch (err) {
      await waiter?.cancel()
      // Best effort: the start's own error is what the caller needs; recovery frees what this left at the next start.
      await releaseCapsule(this.deps, spec.name, dir, cg).catch(() => undefined)
      await rm(dir, { recursive: true, force: true })
      throw err
    } finally {
      this.grants.release(devices)
    }
  }

  /** What the last recover() did (the agent logs it). */
  lastRecovery: RecoveryReport | undefined

  /** The node's capsule bridge (absent when rootless): its gateway is where capsules' DNS queries go. */
  get bridge (): BridgeNetwork | undefined { return this.deps.bridge }

  /** A bridge request becomes the namespace prepared for it (the OCI bundle joins it by path); other modes pass through. */
  private async attachNetwork (spec: CapsuleRunSpec): Promise<CapsuleRunSpec & { bridgeGateway?: string }> {
    const net = spec.network
    if (typeof net !== 'object' || !('bridge' in net)) return spec
    const bridge = this.deps.bridge
    if (bridge === undefined) throw new NetworkUnsupportedError(`capsule ${spec.name}: bridge networking needs an agent running as root; a rootless agent runs capsules with --network host or none`)
    const a = await bridge.attach(spec.name, net.bridge.ports)
    return { ...spec, network: { netnsPath: a.netnsPath }, bridgeGateway: bridge.gateway }
  }

  /** A capsule's log writer; a failed append (disk full) is reported, never thrown into an unheard 'error' event. */
  private logWriter (name: string, dir: string, opts: { maxBytes: number, maxFiles: number }): RotatingLogWriter {
    const log = new RotatingLogWriter(join(dir, LOG_FILE), opts)
    log.on('error', (err: Error) => { this.deps.onError?.('log', name, err) })
    return log
  }

  /** Follows a capsule process to its exit, then records why it ended and frees its resources. */
  private async track (live: Live, proc: CapsuleProcess): Promise<CapsuleExit> {
    const code = await proc.exited
    try {
      return await this.finalize(live, code)
    } catch {
      // Never leave `exited` rejected with nobody listening: report what we know.
      return { exitCode: code, reason: code === null ? 'lost' : 'exited', oomKilled: false, finishedAt: Date.now() }
    }
  }

  private async finalize (live: Live, code: number | null): Promise<CapsuleExit> {
    const { record, dir } = live
    const cg = record.cgroup !== null ? new CapsuleCgroup(this.deps.cgroups, record.cgroup) : undefined
    const exit = await exitOf(dir, record, cg, code)
    await live.log.close()
    record.status = 'exited'
    record.exit = exit
    record.waiterPid = null
    // The exit is known and returned either way; a record that kept 'running' is settled again at the next recovery.
    await writeRecord(dir, record).catch((err: Error) => { this.deps.onError?.('record', record.name, err) })
    // Freeing the cgroup, runtime state and rootfs mount is off the exit path; remove() and close() wait for it.
    live.released = releaseCapsule(this.deps, record.name, dir, cg).catch((err: Error) => { this.deps.onError?.('release', record.name, err) })
    return exit
  }

  private get (name: string): Live {
    const l = this.live.get(name)
    if (l === undefined) throw new CapsuleNotFoundError(`capsule ${name} is not on this node`)
    return l
  }

  async state (name: string): Promise<CapsuleState> {
    const l = this.get(name)
    let pid: number | null = null
    if (l.record.status !== 'exited') {
      const n = Number((await readFile(join(l.dir, 'pid'), 'utf8').catch(() => '')).trim()) // no pid file yet (or any more): pid null
      pid = Number.isInteger(n) && n > 0 ? n : null
    }
    return { name, image: l.record.image, status: l.record.status, createdAt: l.record.createdAt, pid, devices: l.devices, limitsEnforced: l.record.cgroup !== null, exit: l.record.exit }
  }

  async list (): Promise<CapsuleState[]> {
    return await Promise.all([...this.live.keys()].sort().map(async n => await this.state(n)))
  }

  async wait (name: string, signal?: AbortSignal): Promise<CapsuleExit> {
    const l = this.get(name)
    if (signal === undefined) return await l.exited
    signal.throwIfAborted()
    return await new Promise((resolve, reject) => {
      const onAbort = (): void => { reject(signal.reason as Error) }
      signal.addEventListener('abort', onAbort, { once: true })
      l.exited.then(resolve, reject).finally(() => { signal.removeEventListener('abort', onAbort) })
    })
  }

  /** SIGTERM (or the spec's stop signal), then SIGKILL to every process after `timeoutMs`. */
  async stop (name: string, opts: { timeoutMs?: number, signal?: string } = {}): Promise<CapsuleExit> {
    const l = this.get(name)
    if (l.record.status === 'exited' && l.record.exit !== null) return l.record.exit
    l.record.stopRequested = true
    // A full disk must not make a capsule unstoppable: the flag is kept in memory for its exit, and the record is written again then.
    await writeRecord(l.dir, l.record).catch((err: Error) => { this.deps.onError?.('record', name, err) })
    await this.deps.driver.kill(name, opts.signal ?? 'SIGTERM')
    const timeoutMs = opts.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS
    let t: NodeJS.Timeout | undefined
    const timedOut = await Promise.race([
      l.exited.then(() => false),
      new Promise<boolean>(resolve => { t = setTimeout(() => { resolve(true) }, timeoutMs) })
    ])
    clearTimeout(t)
    if (timedOut) await this.deps.driver.kill(name, 'SIGKILL', true)
    return await l.exited
  }

  /** Deletes a capsule and everything it left (logs included). A running one must be stopped first, unless `force`. */
  async remove (name: string, opts: { force?: boolean } = {}): Promise<void> {
    const l = this.get(name)
    if (l.record.status !== 'exited') {
      if (opts.force !== true) throw new CapsuleStateError(`capsule ${name} is still running: stop it first (or remove with force)`)
      await this.stop(name, { timeoutMs: 0 })
    }
    await l.exited
    await l.released
    this.live.delete(name)
    await rm(l.dir, { recursive: true, force: true })
  }

  /** Keeps the last output of `name` before it is removed and run again (a restart), for `previousLogs`. */
  async keepLogs (name: string): Promise<void> {
    const l = this.live.get(name)
    if (l !== undefined) await this.previous.keep(name, join(l.dir, LOG_FILE))
  }

  /** The output kept by keepLogs, or undefined when none was. */
  async previousLogs (name: string, opts: { tail?: number, since?: number } = {}): Promise<AsyncIterable<LogRecord> | undefined> {
    return await this.previous.read(name, opts)
  }

  /** Forgets kept output of runs `keep` says no (their instances are gone for good). */
  async prunePreviousLogs (keep: (name: string) => boolean): Promise<void> {
    await this.previous.prune(keep)
  }

  logs (name: string, opts: { follow?: boolean, signal?: AbortSignal, tail?: number, since?: number } = {}): AsyncIterable<LogRecord> {
    const l = this.get(name)
    return readLogs(join(l.dir, LOG_FILE), { maxFiles: l.record.log.maxFiles, follow: opts.follow, signal: opts.signal, writer: l.log, tail: opts.tail, since: opts.since })
  }

  async exec (name: string, argv: string[], opts: { env?: string[], cwd?: string, timeoutMs?: number, signal?: AbortSignal } = {}): Promise<ExecResult> {
    const l = this.get(name)
    if (l.record.status !== 'running') throw new CapsuleStateError(`capsule ${name} is ${l.record.status}: exec needs a running capsule`)
    if (opts.env === undefined) return await this.deps.driver.exec(name, argv, opts)
    // crun replaces the whole environment with --env (runc merges): always pass the capsule's, overridden.
    const config = JSON.parse(await readFile(join(l.dir, 'config.json'), 'utf8')) as OciSpec
    const env = new Map(config.process.env.map(kv => [kv.slice(0, kv.indexOf('=')), kv]))
    for (const kv of opts.env) env.set(kv.slice(0, kv.indexOf('=')), kv)
    return await this.deps.driver.exec(name, argv, { ...opts, env: [...env.values()] })
  }

  async stats (name: string): Promise<CgroupStats> {
    const l = this.get(name)
    if (l.record.status === 'exited' || l.record.cgroup === null) {
      return { cpuNanos: 0, memoryBytes: 0, memoryPeakBytes: null, memoryLimitBytes: null, pids: 0, oomKills: l.record.exit?.oomKilled === true ? 1 : 0 }
    }
    return await new CapsuleCgroup(this.deps.cgroups, l.record.cgroup).stats()
  }

  /**
   * At agent start: adopts capsules whose waiter still runs, records and frees
   * those that ended meanwhile, and removes runtime containers, cgroups and
   * mounts this data dir owns but no capsule record claims.
   */
  async recover (): Promise<RecoveryReport> {
    const report: RecoveryReport = { adopted: [], finished: [], orphansRemoved: [] }
    this.lastRecovery = report
    const names = await readdir(this.capsulesDir).catch(() => [] as string[]) // init() made it; absent only in a bare test
    for (const name of names.sort()) {
      if (this.live.has(name)) continue
      const dir = join(this.capsulesDir, name)
      const record = await readRecord(dir)
      if (record === undefined) {
        // Crashed before the first record was written: nothing ran yet.
        await releaseCapsule(this.deps, name, dir, this.cgroupFor(name))
        await rm(dir, { recursive: true, force: true })
        report.orphansRemoved.push(name)
        continue
      }
      const log = this.logWriter(name, dir, record.log)
      const live: Live = { record, dir, log, devices: record.devices, exited: Promise.resolve(record.exit as CapsuleExit) }
      this.live.set(name, live)
      if (record.status === 'exited') { await log.close(); continue }
      await log.open()
      if (record.waiterPid !== null && await isWaiterAlive(record.waiterPid, dir)) {
        const proc = await CapsuleProcess.adopt(dir, record.waiterPid, log)
        live.proc = proc
        live.exited = this.track(live, proc)
        report.adopted.push(name)
      } else {
        await collectRest(dir, log)
        live.exited = this.finalize(live, await readExitCode(dir))
        await live.exited
        await live.released
        report.finished.push(name)
      }
    }
    const running = new Set([...this.live].filter(([, l]) => l.record.status !== 'exited').map(([n]) => n))
    await removeOrphans(this.deps, running, (n) => this.live.has(n), report)
    return report
  }

  /** Detaches from running capsules (they keep running under their waiters) and stops all timers. */
  async close (): Promise<void> {
    this.closed = true
    await this.pools.close()
    for (const l of this.live.values()) {
      await l.proc?.detach()
      if (!l.log.isClosed) await l.log.close()
      await l.released
    }
  }
}
