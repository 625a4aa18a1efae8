// NodeRuntime: runs capsules on this node. Images become rootfs dirs, specs
// become OCI bundles, and an OCI runtime (runc or crun) runs them under a
// detached waiter, so capsules survive an agent crash and are adopted (or
// cleaned up) when the agent comes back.
import { createHash } from 'node:crypto'
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { buildRuntimeConfig, hostNofileHard, type RootlessIds } from './bundle/config.js'
import type { OciSpec } from './bundle/oci-spec.js'
import { CapsuleProcess, collectRest, isWaiterAlive, PendingWaiter, readExitCode, waitForStart } from './capsule-process.js'
import { FifoPool } from './fifo-pool.js'
import { mkdirWithMode, writeNewFile } from './file-modes.js'
import { readRecord, writeRecord, type CapsuleExit, type CapsuleRecord } from './capsule-state.js'
import { CapsuleCgroup, type CgroupLayout, type CgroupStats } from './cgroups.js'
import { CapsuleExistsError, CapsuleNotFoundError, CapsuleStateError, GamingNotAllowedError, ImageLayoutError, NetworkUnsupportedError } from './errors.js'
import type { BridgeNetwork } from './net/bridge.js'
import { applyContainerEdits, mergeEdits, type ContainerEdits } from './gpu/edits.js'
import { readLogs, RotatingLogWriter, type LogRecord } from './logs.js'
import type { ExecResult, OciRuntimeDriver } from './oci/driver.js'
import type { ImageStore, PreparedImage } from './image/store.js'
import { parseRunSpec, type CapsuleRunSpec, type CapsuleRunSpecInput } from './spec.js'

export const DEFAULT_STOP_TIMEOUT_MS = 10_000
export const LOG_FILE = 'capsule.log'

export type CapsuleStatus = 'starting' | 'running' | 'exited'

export interface CapsuleState {
  name: string
  image: string
  status: CapsuleStatus
  createdAt: number
  /** Host pid of the capsule's init while it runs. */
  pid: number | null
  /** CDI devices given to it. */
  devices: string[]
  /** False when the node cannot apply cgroup limits (rootless without delegation): resources are then not enforced. */
  limitsEnforced: boolean
  exit: CapsuleExit | null
}

export interface CapsuleHandle {
  name: string
  /** Resolves when the capsule has exited and its output is in the log. */
  exited: Promise<CapsuleExit>
}

export interface RecoveryReport {
  adopted: string[]
  /** Capsules that had exited (or lost their waiter) while the agent was down, now recorded and released. */
  finished: string[]
  /** Runtime containers, cgroups and mounts with no capsule record, removed. */
  orphansRemoved: string[]
  /** Why the capsule networks could not be reconciled (namespaces and forwards may be left until the next start). */
  networkError?: string
}

/** Resolves GPU requests into CDI edits and gives the gaming profile; see gpu/. */
export interface DeviceProvider {
  gpuEdits: (request: number | string[], inUse: ReadonlySet<string>) => Promise<{ devices: string[], edits: ContainerEdits }>
  gamingEdits: (opts: Exclude<CapsuleRunSpec['gaming'], undefined | boolean> | undefined) => Promise<ContainerEdits>
  hostRoot: string
}

export interface NodeRuntimeDeps {
  dataDir: string
  driver: OciRuntimeDriver
  images: ImageStore
  cgroups: CgroupLayout
  rootless?: RootlessIds
  volumeRoots: string[]
  log: { maxBytes: number, maxFiles: number }
  devices: DeviceProvider
  /** Whether `gaming` capsules may get the node's input and sound devices (default: no). */
  allowGaming?: boolean
  /** The node's capsule bridge; absent on a rootless node (bridge capsules are refused there). */
  bridge?: BridgeNetwork
  /**
   * Told of failures that cannot fail a call: a capsule's log append (disk
   * full) or its record's last write. The capsule runs on; the agent logs it.
   * 'release': freeing what a capsule left (cgroup, runtime state, mount) failed;
   * 'keep-logs': its output for `logs --previous` was not kept.
   */
  onError?: (what: 'log' | 'record' | 'release' | 'keep-logs', capsule: string, err: Error) => void
}

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
  private readonly fifos: FifoPool
  private gpuLock: Promise<void> = Promise.resolve()
  /** Devices picked by a run() still in progress (not yet in `live`). */
  private readonly reservedDevices = new Set<string>()

  constructor (private readonly deps: NodeRuntimeDeps) {
    this.capsulesDir = join(resolve(deps.dataDir), 'capsules')
    this.fifos = new FifoPool(join(resolve(deps.dataDir), 'fifo-pool'))
    this.cgroupPrefix = `/bolt/${createHash('sha256').update(resolve(deps.dataDir)).digest('hex').slice(0, 12)}`
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
    await this.fifos.init()
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

  private devicesInUse (): Set<string> {
    const s = new Set<string>(this.reservedDevices)
    for (const l of this.live.values()) if (l.record.status !== 'exited') for (const d of l.devices) s.add(d)
    return s
  }

  /** Builds the bundle and starts the capsule; resolves once its waiter runs. */
  async run (input: CapsuleRunSpecInput): Promise<CapsuleHandle> {
    if (this.closed) throw new CapsuleStateError('the runtime is closed')
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
      await writeRecord(dir, record)
      waiter = new PendingWaiter(dir, this.deps.driver.runArgv(spec.name, dir, join(dir, 'pid')))
      const log = this.logWriter(spec.name, dir, record.log)
      // Independent steps run side by side: the rootfs mount and mkfifo are process spawns.
      const rootfsPath = join(dir, 'rootfs')
      const steps = await Promise.allSettled([
        this.deps.images.createRootfs(image, dir),
        this.fifos.take(dir),
        cg?.create(spec.resources.memoryBytes),
        log.open(),
        (async () => {
          const config = await this.bundleConfig(await this.attachNetwork(spec), image, rootfsPath, dir, cg)
          if (spec.gpus !== undefined && spec.gpus !== 0) {
            const gpus = spec.gpus
            devices = await this.withGpuLock(async () => {
              const g = await this.deps.devices.gpuEdits(gpus, this.devicesInUse())
              for (const d of g.devices) this.reservedDevices.add(d)
              await applyContainerEdits(config, g.edits, this.deps.devices.hostRoot)
              return g.devices
            })
          }
          if (spec.gaming !== undefined && spec.gaming !== false) {
            const edits = await this.deps.devices.gamingEdits(spec.gaming === true ? undefined : spec.gaming)
            await applyContainerEdits(config, mergeEdits(edits), this.deps.devices.hostRoot)
          }
          await writeFile(join(dir, 'config.json'), JSON.stringify(config))
        })()
      ])
      const failed = steps.find(r => r.status === 'rejected')
      if (failed !== undefined) {
        if (!log.isClosed) await log.close().catch(() => undefined) // the failed step is what gets thrown; the log is discarded with the dir
        throw failed.reason as Error
      }
      const proc = await CapsuleProcess.launch(dir, waiter, log)
      waiter = undefined
      record.waiterPid = proc.waiterPid ?? null
      record.status = 'running'
      record.devices = devices
      await writeRecord(dir, record)
      const live: Live = { record, dir, log, proc, devices, exited: Promise.resolve() as unknown as Promise<CapsuleExit> }
      live.exited = this.track(live, proc)
      this.live.set(spec.name, live)
      await waitForStart(dir, live.exited)
      // Only now: the OCI runtime's setup ran in this cgroup unthrottled (see BundleInput.cpuOnParent).
      if (cg !== undefined && spec.resources.cpus !== undefined) await this.limitCpuOrRemove(spec.name, cg, spec.resources.cpus)
      return { name: spec.name, exited: live.exited }
    } catch (err) {
      await waiter?.cancel()
      // Best effort: the start's own error is what the caller needs; recovery frees what this left at the next start.
      await this.release(spec.name, dir, cg).catch(() => undefined)
      await rm(dir, { recursive: true, force: true })
      throw err
    } finally {
      for (const d of devices) this.reservedDevices.delete(d)
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

  /** GPU picks are serialized so two concurrent runs never get the same device. */
  private async withGpuLock<T> (fn: () => Promise<T>): Promise<T> {
    const prev = this.gpuLock
    let release!: () => void
    this.gpuLock = new Promise<void>(resolve => { release = resolve })
    await prev
    try {
      return await fn()
    } finally {
      release()
    }
  }

  private async bundleConfig (spec: CapsuleRunSpec & { bridgeGateway?: string }, image: PreparedImage, rootfs: string, dir: string, cg: CapsuleCgroup | undefined): Promise<OciSpec> {
    const hostname = spec.hostname ?? spec.name
    const etcDir = join(dir, 'etc')
    // Bind-mounted into the capsule, where any of its users reads them.
    await mkdirWithMode(etcDir, 0o755)
    const resolv = await readFile('/etc/resolv.conf', 'utf8').catch(() => 'nameserver 1.1.1.1\n')
    await writeNewFile(join(etcDir, 'hostname'), `${hostname}\n`, 0o644)
    await writeNewFile(join(etcDir, 'hosts'), `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${hostname}\n`, 0o644)
    const outside = resolv.replace(/^nameserver\s+127\.\S+\s*$/gm, '')
    // A bridge capsule asks the node's DNS on the bridge first (the agent serves *.bolt there), then the host's own resolvers.
    await writeNewFile(join(etcDir, 'resolv.conf'), spec.network === 'host' ? resolv : spec.bridgeGateway !== undefined ? `nameserver ${spec.bridgeGateway}\n${outside}` : outside, 0o644)
    const config = await buildRuntimeConfig({
      spec,
      image: image.config,
      rootfs,
      ...(cg !== undefined ? { cgroupsPath: cg.leafPath, memoryOnParent: true, cpuOnParent: true } : {}),
      cgroupNamespace: this.deps.cgroups.mode === 'v2',
      ...(this.deps.rootless !== undefined ? { rootless: this.deps.rootless } : {}),
      volumeRoots: this.deps.volumeRoots,
      etcFiles: { hostname: join(etcDir, 'hostname'), hosts: join(etcDir, 'hosts'), resolvConf: join(etcDir, 'resolv.conf') }
    })
    if (spec.gaming !== undefined && spec.gaming !== false) {
      // esync/fsync in Wine and Proton want a high open-file limit.
      const hard = await hostNofileHard()
      config.process.rlimits = config.process.rlimits.map(r => r.type === 'RLIMIT_NOFILE' ? { type: r.type, soft: Math.min(hard, Math.max(r.soft, 524288)), hard: Math.min(hard, Math.max(r.hard, 524288)) } : r)
    }
    return config
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
    const [oomKills, limitHit, started] = await Promise.all([
      cg !== undefined ? cg.oomKills() : 0,
      cg !== undefined ? cg.memoryLimitHit() : false,
      stat(join(dir, 'pid')).then(() => true, () => false)
    ])
    const oom = oomKills > 0 || (limitHit && code === 137 && !record.stopRequested)
    let reason: CapsuleExit['reason']
    if (oom) reason = 'oom'
    else if (code === null) reason = 'lost'
    else if (!started) reason = 'start-failed'
    else if (record.stopRequested) reason = 'stopped'
    else reason = 'exited'
    const exit: CapsuleExit = { exitCode: code, reason, oomKilled: oom, finishedAt: Date.now() }
    await live.log.close()
    record.status = 'exited'
    record.exit = exit
    record.waiterPid = null
    // The exit is known and returned either way; a record that kept 'running' is settled again at the next recovery.
    await writeRecord(dir, record).catch((err: Error) => { this.deps.onError?.('record', record.name, err) })
    // Freeing the cgroup, runtime state and rootfs mount is off the exit path; remove() and close() wait for it.
    live.released = this.release(record.name, dir, cg).catch((err: Error) => { this.deps.onError?.('release', record.name, err) })
    return exit
  }

  /** Frees what a stopped capsule holds: runtime state, cgroup, rootfs mount. Keeps its record and logs. */
  private async release (name: string, dir: string, cg: CapsuleCgroup | undefined): Promise<void> {
    try {
      const st = await this.deps.driver.state(name)
      if (st !== undefined) {
        if (st.status === 'running' || st.status === 'paused' || st.status === 'created') await this.deps.driver.kill(name, 'SIGKILL', true)
        await this.deps.driver.delete(name, true)
      }
      await cg?.remove()
      await this.deps.bridge?.detach(name)
    } finally {
      // Whatever failed above, the rootfs mount goes: one left under a removed dir stays for the machine's life.
      await this.deps.images.removeRootfs(dir)
    }
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

  /** Where the output of a removed run of `name` is kept for `logs --previous` (its last log file). */
  private previousLogPath (name: string): string {
    return join(resolve(this.deps.dataDir), 'previous-logs', `${name}.log`)
  }

  /** Keeps the last output of `name` before it is removed and run again (a restart), for `previousLogs`. */
  async keepLogs (name: string): Promise<void> {
    const l = this.live.get(name)
    if (l === undefined) return
    await mkdir(join(resolve(this.deps.dataDir), 'previous-logs'), { recursive: true, mode: 0o700 })
    await copyFile(join(l.dir, LOG_FILE), this.previousLogPath(name)).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') this.deps.onError?.('keep-logs', name, err) })
  }

  /** The output kept by keepLogs, or undefined when none was. */
  async previousLogs (name: string, opts: { tail?: number, since?: number } = {}): Promise<AsyncIterable<LogRecord> | undefined> {
    const path = this.previousLogPath(name)
    if (!await stat(path).then(() => true, () => false)) return undefined
    return readLogs(path, { maxFiles: 1, ...opts })
  }

  /** Forgets kept output of runs `keep` says no (their instances are gone for good). */
  async prunePreviousLogs (keep: (name: string) => boolean): Promise<void> {
    const dir = join(resolve(this.deps.dataDir), 'previous-logs')
    for (const f of await readdir(dir).catch(() => [] as string[])) { // none kept yet: nothing to prune
      if (f.endsWith('.log') && !keep(f.slice(0, -4))) await rm(join(dir, f), { force: true })
    }
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
        await this.release(name, dir, this.cgroupFor(name))
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
    // Namespaces, veths and port forwards of capsules that no longer run.
    if (this.deps.bridge !== undefined) {
      const running = new Set([...this.live].filter(([, l]) => l.record.status !== 'exited').map(([n]) => n))
      try {
        for (const n of await this.deps.bridge.reconcile(running)) report.orphansRemoved.push(`network ${n}`)
      } catch (err) {
        // Capsules still run without it; the next start tries again. Not a reason to refuse every capsule on this node.
        report.networkError = (err as Error).message
      }
    }
    // Containers in our runtime state root that no record claims.
    for (const c of await this.deps.driver.list().catch((err: Error) => { this.deps.onError?.('release', '(orphaned containers)', err); return [] })) {
      if (this.live.has(c.id)) continue
      await this.deps.driver.kill(c.id, 'SIGKILL', true)
      await this.deps.driver.delete(c.id, true)
      report.orphansRemoved.push(c.id)
    }
    return report
  }

  /** Detaches from running capsules (they keep running under their waiters) and stops all timers. */
  async close (): Promise<void> {
    this.closed = true
    await this.fifos.close()
    for (const l of this.live.values()) {
      await l.proc?.detach()
      if (!l.log.isClosed) await l.log.close()
      await l.released
    }
  }
}
