// One interface over the OCI runtimes this node may have (runc, crun): where
// the binary is, how to invoke it (crun on a hybrid cgroup host needs a private
// mount namespace without the cgroup2 mount), and the lifecycle verbs.
import { access, constants } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { runCommand, type CommandResult } from '../command.js'
import { RuntimeCommandError, RuntimeNotFoundError } from '../errors.js'

export type RuntimeName = 'runc' | 'crun'
export const RUNTIME_NAMES: readonly RuntimeName[] = ['runc', 'crun']

/** sbin dirs are often missing from a non-login PATH. */
const EXTRA_BIN_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']

export interface InstalledRuntime {
  name: RuntimeName
  path: string
  version: string
}

export async function findBinary (name: string): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_BIN_DIRS]
  for (const d of dirs) {
    const p = join(d, name)
    if (await access(p, constants.X_OK).then(() => true, () => false)) return p
  }
  return undefined
}

/** The runtimes installed here, in preference order (runc first: crun needs a workaround on hybrid hosts). */
export async function detectRuntimes (): Promise<InstalledRuntime[]> {
  const out: InstalledRuntime[] = []
  for (const name of RUNTIME_NAMES) {
    const path = await findBinary(name)
    if (path === undefined) continue
    const r = await runCommand(path, ['--version'], { timeoutMs: 5000 }).catch(() => undefined) // a runtime that cannot even say its version is not offered
    if (r?.exitCode !== 0) continue
    out.push({ name, path, version: /version\s+(\S+)/.exec(r.stdout)?.[1] ?? 'unknown' })
  }
  return out
}

export type ContainerStatus = 'creating' | 'created' | 'running' | 'paused' | 'stopped'

export interface ContainerState {
  id: string
  status: ContainerStatus
  pid: number
  bundle: string
}

export interface ExecResult {
  exitCode: number
  stdout: string
  stderr: string
}

export interface DriverOptions {
  /** The runtime's state dir (`--root`); one per agent keeps its containers apart from others'. */
  stateRoot: string
  /** Run the binary in a private mount namespace with `/sys/fs/cgroup/unified` unmounted (crun on cgroup v1 hybrid hosts). */
  hybridCgroupWorkaround?: boolean
  /** Pass --rootless explicitly (both runtimes detect it, but be explicit when not root). */
  rootless?: boolean
}

/** The runtime's umask, as a shell command (the agent's own is 077). */
export const RUNTIME_UMASK = 'umask 022'

/** The verbs every OCI runtime implements, as runc and crun spell them. */
export class OciRuntimeDriver {
  constructor (readonly name: RuntimeName, readonly binary: string, readonly opts: DriverOptions) {}

  /**
   * argv (program first) that runs the runtime with `args`. The runtime runs
   * with umask 022, not the agent's 077: what it makes (cgroup dirs, mount
   * points, the processes of `exec`) is read by the capsule's own users.
   */
  argv (args: string[]): string[] {
    const base = this.bareArgv(args)
    if (this.opts.hybridCgroupWorkaround !== true) return ['/bin/sh', '-c', `${RUNTIME_UMASK}; exec "$0" "$@"`, ...base]
    // crun refuses hybrid cgroups ("cgroups in hybrid mode not supported"); hide the v2 mount from it only.
    return ['unshare', '-m', '--propagation', 'private', 'sh', '-c', `${RUNTIME_UMASK}; umount /sys/fs/cgroup/unified 2>/dev/null; exec "$0" "$@"`, ...base]
  }

  private bareArgv (args: string[]): string[] {
    return [this.binary, '--root', this.opts.stateRoot, ...(this.opts.rootless === true ? ['--rootless', 'true'] : []), ...args]
  }

  /**
   * argv for `run` in the foreground: the caller's process is the capsule's
   * waiter, a shell that sets RUNTIME_UMASK itself, so no shell of our own
   * is started in front of the runtime (one exec less on every start).
   */
  runArgv (id: string, bundle: string, pidFile: string): string[] {
    const args = ['run', '--bundle', bundle, '--pid-file', pidFile, id]
    return this.opts.hybridCgroupWorkaround === true ? this.argv(args) : this.bareArgv(args)
  }

  private async invoke (args: string[], what: string, timeoutMs = 30_000): Promise<CommandResult> {
    const [cmd, ...rest] = this.argv(args) as [string, ...string[]]
    let r: CommandResult
    try {
      r = await runCommand(cmd, rest, { timeoutMs })
    } catch (err) {
      throw new RuntimeCommandError(`${this.name} could not be started for ${what}: ${(err as Error).message}`, null, '')
    }
    return r
  }

  private async must (args: string[], what: string): Promise<CommandResult> {
    const r = await this.invoke(args, what)
    if (r.exitCode !== 0) throw new RuntimeCommandError(`${this.name} ${what} failed: ${r.stderr.trim() || `exit ${r.exitCode ?? r.signal ?? '?'}`}`, r.exitCode, r.stderr)
    return r
  }

  async create (id: string, bundle: string, pidFile: string): Promise<void> {
    await this.must(['create', '--bundle', bundle, '--pid-file', pidFile, id], `create ${id}`)
  }

  async start (id: string): Promise<void> {
    await this.must(['start', id], `start ${id}`)
  }

  /** The container's state, or undefined when the runtime does not know it. */
  async state (id: string): Promise<ContainerState | undefined> {
    const r = await this.invoke(['state', id], `state ${id}`)
    if (r.exitCode !== 0) return undefined
    try {
      const s = JSON.parse(r.stdout) as { id: string, status: ContainerStatus, pid: number, bundle: string }
      return { id: s.id, status: s.status, pid: s.pid, bundle: s.bundle }
    } catch {
      return undefined // exit 0 without JSON: as unknown as a state the runtime does not report
    }
  }

  /** Sends `signal` to the capsule's init (to every process with `all`). Quiet when it is already gone. */
  /**
   * Sends `signal` to the container's init, or with `all` to every process
   * of its cgroup. A rootless container without a delegated cgroup has no
   * process list to walk (runc: `lstat : no such file or directory`), so a
   * failed `--all` falls back to the init alone: every capsule has its own
   * PID namespace, and when its init dies the kernel kills the rest.
   */
  async kill (id: string, signal: string, all = false): Promise<boolean> {
    const sig = signal.replace(/^SIG/, '')
    const r = await this.invoke(['kill', ...(all ? ['--all'] : []), id, sig], `kill ${id}`)
    if (r.exitCode === 0 || !all) return r.exitCode === 0
    const init = await this.invoke(['kill', id, sig], `kill ${id}`)
    return init.exitCode === 0
  }

  async delete (id: string, force = false): Promise<void> {
    const r = await this.invoke(['delete', ...(force ? ['--force'] : []), id], `delete ${id}`)
    if (r.exitCode !== 0 && !/not exist|does not exist|not found|No such file/i.test(r.stderr)) {
      throw new RuntimeCommandError(`${this.name} delete ${id} failed: ${r.stderr.trim()}`, r.exitCode, r.stderr)
    }
  }

  /** Ids of the containers in this driver's state root. */
  async list (): Promise<Array<{ id: string, status: ContainerStatus, pid: number }>> {
    const r = await this.must(['list', '--format', 'json'], 'list')
    const text = r.stdout.trim()
    if (text === '' || text === 'null') return []
    return (JSON.parse(text) as Array<{ id: string, status: ContainerStatus, pid: number }>).map(c => ({ id: c.id, status: c.status, pid: c.pid }))
  }

  async exec (id: string, argv: string[], opts: { env?: string[], cwd?: string, timeoutMs?: number, signal?: AbortSignal } = {}): Promise<ExecResult> {
    const args = ['exec', ...(opts.env ?? []).flatMap(e => ['--env', e]), ...(opts.cwd !== undefined ? ['--cwd', opts.cwd] : []), id, ...argv]
    const [cmd, ...rest] = this.argv(args) as [string, ...string[]]
    const r = await runCommand(cmd, rest, { timeoutMs: opts.timeoutMs ?? 60_000, signal: opts.signal })
    return { exitCode: r.exitCode ?? (r.signal !== null ? 128 + signalNumber(r.signal) : -1), stdout: r.stdout, stderr: r.stderr }
  }
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGUSR1: 10, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 }
export function signalNumber (sig: string): number {
  return SIGNALS[sig] ?? 0
}

/** Picks a runtime: the one asked for, or (auto) the first installed. */
export async function chooseRuntime (want: RuntimeName | 'auto'): Promise<InstalledRuntime> {
  const installed = await detectRuntimes()
  const pick = want === 'auto' ? installed[0] : installed.find(r => r.name === want)
  if (pick === undefined) {
    throw new RuntimeNotFoundError(want === 'auto'
      ? 'no OCI runtime found: install runc or crun (apt-get install runc)'
      : `${want} is not installed (found: ${installed.map(r => r.name).join(', ') || 'none'}); install it or set runtime to auto`)
  }
  return pick
}
