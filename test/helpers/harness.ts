// Starts real agent processes on loopback for integration tests and
// scenarios: each with its own data dir, a config file, and helpers to run
// client commands against it, kill it (-9), pause it, and restart it.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { cgroupPrefixOf, netnsPrefix } from '../../native/index.js'

const here = dirname(fileURLToPath(import.meta.url))
/** The compiled CLI, unbundled: dist/agent/cli.js next to dist/scenarios. */
export const TREE_CLI = join(here, '..', '..', 'agent', 'cli.js')
/** The bundled CLI (scripts/build-bundle.mjs), which users run through bin/bolt-agent.js. */
export const BUNDLE_CLI = join(here, '..', '..', 'bundle', 'cli.js')

/**
 * What tests and scenarios run, as bin/bolt-agent.js chooses: the bundle
 * when it was built after the last tsc run, else the compiled tree (after a
 * bare `tsc`, a stale bundle would test old code).
 */
export const CLI = bundleIsFresh() ? BUNDLE_CLI : TREE_CLI

function bundleIsFresh (): boolean {
  if (!existsSync(BUNDLE_CLI)) return false
  return statSync(BUNDLE_CLI).mtimeMs >= statSync(TREE_CLI).mtimeMs
}

/** Fast membership timings for tests: detection in a few seconds. */
export const FAST_TOML = `
[membership]
probe_interval_ms = 300
probe_timeout_ms = 150
suspicion_mult = 3
gossip_interval_ms = 100
push_pull_interval_ms = 5000
`

export interface CliResult { code: number, stdout: string, stderr: string }

export interface ReadyLine {
  event: 'ready'
  node: { id: string, name: string, role: string, addrs: string[] }
  api: string
  dataDir: string
  /** Not in the agent's ready line (start-up output holds no secret): filled from `bolt-agent token --json` after `init`. */
  token: string
  /** As `token`. */
  join: string
}

/** The command line that runs the CLI, behind an optional launcher (e.g. `ip netns exec NS`). */
function cliCommand (prefix: string[], args: string[]): [string, string[]] {
  const argv = [process.execPath, CLI, ...args]
  const all = [...prefix, ...argv]
  return [all[0] as string, all.slice(1)]
}

export async function runCli (args: string[], opts: { timeoutMs?: number, env?: NodeJS.ProcessEnv, prefix?: string[] } = {}): Promise<CliResult> {
  return await new Promise((resolve, reject) => {
    const [cmd, argv] = cliCommand(opts.prefix ?? [], args)
    const p = spawn(cmd, argv, { env: { ...process.env, BOLT_LOG_JSON: '1', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => { p.kill('SIGKILL') }, opts.timeoutMs ?? 60_000)
    p.on('error', reject)
    p.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? 137, stdout, stderr }) })
  })
}

export class AgentProcess {
  proc: ChildProcess | undefined
  ready: ReadyLine | undefined
  stderrTail: string[] = []
  exited: Promise<number | null> = Promise.resolve(null)

  /** `prefix`: a launcher the agent runs behind, e.g. `ip netns exec NS` for a network namespace. */
  constructor (readonly name: string, readonly dataDir: string, readonly configFile: string, readonly prefix: string[] = []) {}

  get id (): string { return this.ready?.node.id ?? '' }

  /** Everything the agent printed on stdout so far (its ready line; nothing else in --json mode). */
  stdoutLines: string[] = []

  /**
   * Starts `bolt-agent <args>` and resolves with its ready line (plus the
   * join token, asked of the agent with `token --json`), or rejects with its
   * error line. `env`: added to the agent's environment (e.g. BOLT_TOKEN).
   */
  async start (args: string[], timeoutMs = 30_000, env: NodeJS.ProcessEnv = {}): Promise<ReadyLine> {
    const line = await this.startProcess(args, timeoutMs, env)
    this.ready = { ...line, token: this.ready?.token ?? '', join: this.ready?.join ?? '' }
    // Asked of `init` only: tests join through a cluster's first agent, and
    // a join's time to ready (footprint) must not include an extra command.
    if (args[0] !== 'init') return this.ready
    const tok = await this.cli(['token', '--json'], Math.max(timeoutMs, 20_000))
    if (tok.code !== 0) throw new Error(`${this.name}: token --json exited with ${tok.code}: ${tok.stderr.trim()}`)
    const { token, join } = JSON.parse(tok.stdout) as { token: string, join: string }
    this.ready = { ...line, token, join }
    return this.ready
  }

  private async startProcess (args: string[], timeoutMs: number, env: NodeJS.ProcessEnv): Promise<ReadyLine> {
    const [cmd, argv] = cliCommand(this.prefix, ['--json', '--data', this.dataDir, '--config', this.configFile, '--log-level', 'info', ...args])
    this.stdoutLines = []
    const p = spawn(cmd, argv, {
      env: { ...process.env, BOLT_LOG_JSON: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    this.proc = p
    this.exited = new Promise(resolve => p.on('exit', (code, sig) => resolve(code ?? (sig !== null ? 128 : null))))
    p.on('exit', (code, sig) => {
      // An agent that dies on its own is a finding: show why, on the test's stderr.
      if (sig === null && code !== 0 && this.ready !== undefined) {
        process.stderr.write(`# agent ${this.name} exited with ${code}; last log lines:\n${this.stderrTail.slice(-15).map(l => '#   ' + l.slice(0, 400)).join('\n')}\n`)
      }
    })
    createInterface({ input: p.stderr! }).on('line', (l) => {
      this.stderrTail.push(l)
      if (this.stderrTail.length > 200) this.stderrTail.shift()
    })
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name} not ready after ${timeoutMs} ms: ${this.stderrTail.slice(-5).join(' | ')}`)), timeoutMs)
      createInterface({ input: p.stdout! }).on('line', (l) => {
        if (this.stdoutLines.length < 100) this.stdoutLines.push(l)
        try {
          const v = JSON.parse(l) as ReadyLine
          if (v.event === 'ready') { clearTimeout(timer); resolve(v) }
        } catch {}
      })
      p.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${this.name} exited with ${code}: ${this.stderrTail.slice(-3).join(' | ')}`)) })
    })
  }

  async cli (args: string[], timeoutMs?: number): Promise<CliResult> {
    return await runCli(['--data', this.dataDir, ...args], { prefix: this.prefix, ...(timeoutMs !== undefined ? { timeoutMs } : {}) })
  }

  /** A CLI command left running, for tests that kill it midway (`cli` waits for the end). */
  spawnCli (args: string[]): ChildProcess {
    const [cmd, argv] = cliCommand(this.prefix, ['--data', this.dataDir, ...args])
    return spawn(cmd, argv, { env: { ...process.env, BOLT_LOG_JSON: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
  }

  /**
   * What `status --json` prints (the same GET /v1/status), or undefined when
   * the agent does not answer. Asked of the API directly: tests poll this
   * every few hundred ms, and a CLI process per poll cost more CPU than the
   * agents under test. An agent behind a launcher (a network namespace) is
   * out of this process's reach, so it is asked through the CLI.
   */
  async status (): Promise<StatusLike | undefined> {
    if (this.prefix.length > 0) {
      const r = await this.cli(['status', '--json'], 10_000)
      if (r.code !== 0) return undefined
      return JSON.parse(r.stdout) as StatusLike
    }
    try {
      const api = JSON.parse(await readFile(join(this.dataDir, 'api.json'), 'utf8')) as { url: string, token: string }
      const res = await fetch(`${api.url}/v1/status`, { headers: { authorization: `Bearer ${api.token}` }, signal: AbortSignal.timeout(10_000) })
      if (res.ok) return await res.json() as StatusLike
      await res.body?.cancel()
      return undefined
    } catch {
      // No api.json yet, a half-written one, or an agent that is down or slow: not answering, as the CLI's non-zero exit was.
      return undefined
    }
  }

  signal (sig: NodeJS.Signals): void { this.proc?.kill(sig) }

  async kill9 (): Promise<void> {
    this.proc?.kill('SIGKILL')
    await this.exited
  }

  async stop (): Promise<void> {
    if (this.proc === undefined || this.proc.exitCode !== null || this.proc.signalCode !== null) return
    this.proc.kill('SIGTERM')
    const t = setTimeout(() => this.proc?.kill('SIGKILL'), 10_000)
    await this.exited
    clearTimeout(t)
  }
}

export interface StatusLike {
  node: { id: string, name: string, role: string, addrs: string[] }
  leader: string | null
  term: number
  members: Array<{ id: string, name: string, state: string, role: string, addrs: string[], incarnation?: number }>
}

export class Cluster {
  readonly agents: AgentProcess[] = []
  private constructor (readonly root: string, readonly toml: string) {}

  static async create (toml = FAST_TOML): Promise<Cluster> {
    return new Cluster(await mkdtemp(join(tmpdir(), 'bolt-cluster-')), toml)
  }

  async add (name: string, extraToml = ''): Promise<AgentProcess> {
    const dataDir = join(this.root, name)
    const configFile = join(this.root, `${name}.toml`)
    await writeFile(configFile, `name = "${name}"\nlisten = ["/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0"]\n${extraToml}\n${this.toml}`)
    const a = new AgentProcess(name, dataDir, configFile)
    this.agents.push(a)
    return a
  }

  /**
   * init the first agent, join the rest through it over `transport`.
   * `readyTimeoutMs`: how long each agent may take to be ready (a benchmark on a loaded machine gives more).
   */
  async form (n: number, transport: 'quic' | 'tcp' = 'quic', readyTimeoutMs?: number): Promise<AgentProcess[]> {
    const first = await this.add('a0')
    await first.start(['init'], readyTimeoutMs)
    const seed = seedAddr(first, transport)
    const rest = await Promise.all(Array.from({ length: n - 1 }, async (_, i) => {
      const a = await this.add(`a${i + 1}`)
      await a.start(['join', seed], readyTimeoutMs, { BOLT_TOKEN: first.ready!.token })
      return a
    }))
    return [first, ...rest]
  }

  /** `form`, then wait until the first agent sees all `n` alive; throws if they are not within `timeoutMs`. */
  async formAlive (n: number, transport: 'quic' | 'tcp' = 'quic', timeoutMs = 60_000): Promise<AgentProcess[]> {
    const agents = await this.form(n, transport)
    const alive = await waitFor(async () => (await agents[0]!.status())?.members.filter(m => m.state === 'alive').length === n, timeoutMs, 500)
    if (alive < 0) throw new Error(`not all ${n} agents are alive members`)
    return agents
  }

  async destroy (): Promise<void> {
    await Promise.all(this.agents.map(async a => { await a.stop().catch(() => {}) }))
    // Capsules outlive their agent by design: kill what the agents started, then unmount.
    for (const a of this.agents) await killCapsules(a.dataDir)
    // An agent keeps its capsule bridge when it stops (capsules outlive it); a test's own bridge goes with the test.
    for (const a of this.agents) await removeOwnBridge(await readFile(a.configFile, 'utf8').catch(() => ''))
    await rm(this.root, { recursive: true, force: true }).catch(async () => {
      await new Promise(resolve => setTimeout(resolve, 1000))
      await rm(this.root, { recursive: true, force: true }).catch(() => {})
    })
  }
}

/** Kills and deletes every container an agent's runtime left, and unmounts its rootfs mounts. */
export async function killCapsules (dataDir: string): Promise<void> {
  await killRuntimeCapsules(join(dataDir, 'runtime'), dataDir)
}

/**
 * What a native runtime whose data dir is `runtimeDir` left, whoever made it
 * (an agent, or a runtime a test built itself): its containers under runc and
 * crun, rootfs mounts, bridge capsules' network namespaces (their veths go
 * with them) and its own cgroups (`/bolt/HASH/CAPSULE` in every hierarchy;
 * `runc delete` removes only the runtime's leaf below them).
 */
export async function killRuntimeCapsules (runtimeDir: string, unmountRoot = runtimeDir): Promise<void> {
  for (const rt of ['runc', 'crun']) {
    const root = join(runtimeDir, `${rt}-state`)
    const ids = await execText(rt, ['--root', root, 'list', '-q'])
    for (const id of ids.split('\n').map(s => s.trim()).filter(Boolean)) {
      await execText(rt, ['--root', root, 'kill', id, 'KILL'])
      await execText(rt, ['--root', root, 'delete', '-f', id])
    }
  }
  // One read of the mount table: rootfs mounts under unmountRoot, and the cgroup hierarchies.
  const table = (await readFile('/proc/mounts', 'utf8').catch(() => '')).split('\n').map(l => l.split(' '))
  const mounts = table.map(f => f[1] ?? '').filter(m => m.startsWith(unmountRoot + '/'))
  for (const m of mounts.sort((a, b) => b.length - a.length)) await execText('umount', ['-l', m])
  const prefix = `${netnsPrefix(runtimeDir)}-`
  const names = (await execText('ip', ['netns', 'list'])).split('\n').map(l => l.split(' ')[0] ?? '').filter(n => n.startsWith(prefix))
  for (const ns of names) await execText('ip', ['netns', 'delete', ns])
  const cgroupDir = cgroupPrefixOf(runtimeDir)
  const hierarchies = table.filter(f => f[2] === 'cgroup' || f[2] === 'cgroup2').map(f => f[1] ?? '')
  for (const h of hierarchies) await removeEmptyTree(join(h, cgroupDir))
}

/** rmdir of `dir` and every dir below it, deepest first; one that is busy or gone is left as it is. */
async function removeEmptyTree (dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
  for (const e of entries) if (e.isDirectory()) await removeEmptyTree(join(dir, e.name))
  await rmdir(dir).catch(() => undefined) // a cgroup with a process left in it stays; the capsule kill above is what ends those
}

/**
 * Deletes the bridge a test's config names (`[network] bridge = "X"`) and
 * its nft table. The default bolt0 is shared by every agent on this host
 * that names none (tests run two at a time): it goes only when nothing is
 * attached to it and no agent process is left on the machine, so the last
 * test to use it removes it.
 */
async function removeOwnBridge (toml: string): Promise<void> {
  const name = /^\s*bridge\s*=\s*"([A-Za-z0-9_.-]{1,15})"/m.exec(toml)?.[1]
  if (name === undefined || name === 'bolt0') { await removeIdleDefaultBridge(); return }
  await execText('ip', ['link', 'del', name])
  await execText('nft', ['delete', 'table', 'ip', `bolt_${name}`])
}

async function removeIdleDefaultBridge (): Promise<void> {
  const attached = (await execText('ip', ['-j', 'link', 'show', 'master', 'bolt0'])).trim()
  if (attached !== '' && attached !== '[]') return
  if (await anyAgentProcess()) return
  await execText('ip', ['link', 'del', 'bolt0'])
  await execText('nft', ['delete', 'table', 'ip', 'bolt_bolt0'])
}

/** Whether any process on the machine runs the agent's CLI (an agent, or a client command). */
async function anyAgentProcess (): Promise<boolean> {
  for (const pid of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '') // gone already: not running
    if (cmd.includes('dist/agent/cli.js')) return true
  }
  return false
}

async function execText (cmd: string, args: string[]): Promise<string> {
  return await new Promise(resolve => {
    execFile(cmd, args, { timeout: 10_000 }, (err, stdout) => { resolve(err !== null ? '' : stdout) })
  })
}

export function seedAddr (a: AgentProcess, transport: 'quic' | 'tcp'): string {
  const addr = a.ready?.node.addrs.find(x => transport === 'quic' ? x.includes('/quic-v1') : (x.includes('/tcp/') && !x.includes('/ws')))
  if (addr === undefined) throw new Error(`${a.name} has no ${transport} address`)
  return addr
}

/**
 * A capsule's shell line that runs `cmd` until the capsule is stopped. A
 * capsule's PID 1 gets no SIGTERM it has no handler for, so a bare `sleep`
 * (or `exec httpd`) ignores the agent's stop, and each stop would wait out
 * the agent's stop timeout (10 s) for SIGKILL. Trapping TERM ends a stop at
 * once, as a real service does; `wait $!` keeps `cmd`'s exit status.
 */
export function untilStopped (cmd = 'sleep 3600'): string {
  return `trap 'exit 0' TERM; ${cmd} & wait $!`
}

/** Polls `check` until it returns true or the deadline passes; returns the elapsed ms, or -1 on timeout. */
export async function waitFor (check: () => Promise<boolean>, timeoutMs: number, intervalMs = 200): Promise<number> {
  const start = Date.now()
  while (Date.now() - start < timeoutMs) {
    if (await check().catch(() => false)) return Date.now() - start
    await new Promise(resolve => setTimeout(resolve, intervalMs))
  }
  return -1
}

/** `waitFor` for tests that cannot go on without it: throws, naming what it waited for, at the deadline; returns the elapsed ms. */
export async function waitOrFail (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000, intervalMs = 25): Promise<number> {
  const took = await waitFor(async () => await check(), timeoutMs, intervalMs)
  if (took < 0) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)
  return took
}
