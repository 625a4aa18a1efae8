// Shells started ahead of time, each waiting to exec one command it is given
// later on its stdin. A spawn from the agent forks the whole Node process and
// holds its event loop until the child has exec'ed; a capsule start paid that
// twice (its waiter, its overlay mount). Taken from here, a start pays a pipe
// write instead, and the pool refills once no start is in flight.
import { spawn, type ChildProcess } from 'node:child_process'
import { commandSignal, runCommand, settle, type CommandOptions, type CommandResult } from './command.js'

/** Idle shells kept of each kind (a start takes one of each). */
export const SHELL_POOL_SIZE = 2
/** How long after the last start ends the pool refills (its forks then hold the event loop, not a start's). */
export const REFILL_DELAY_MS = 50

/** Reads a count line, then that many lines, one argument each, into "$@"; EOF (the pool closed) exits. */
const READ_ARGS = 'read -r n || exit 0; set --; while [ "$n" -gt 0 ]; do IFS= read -r a || exit 0; set -- "$@" "$a"; n=$((n-1)); done'
/** A command shell: a working dir line (empty: stay), then the argv, exec'ed. */
const COMMAND_SHELL = `IFS= read -r cwd || exit 0; ${READ_ARGS}; [ -z "$cwd" ] || cd "$cwd" || exit 127; exec "$@"`
/** A waiter shell: started with the waiter's script as $1, it execs `sh -c SCRIPT bolt-waiter ARGS` (its cmdline then names the capsule dir). */
const WAITER_SHELL = `s=$1; ${READ_ARGS}; exec /bin/sh -c "$s" bolt-waiter "$@"`

/** The lines a pooled shell reads; undefined when an argument holds a newline (that one is spawned directly). */
function argLines (argv: string[], cwd?: string): string | undefined {
  if (argv.some(a => a.includes('\n')) || cwd?.includes('\n') === true) return undefined
  return `${cwd !== undefined ? `${cwd}\n` : ''}${argv.length}\n${argv.map(a => `${a}\n`).join('')}`
}

function alive (c: ChildProcess): boolean {
  return c.exitCode === null && c.signalCode === null && c.stdin?.writable === true
}

/** Whether a shell (its process and pipes) holds the event loop open: not while idle in the pool, again once taken. */
function holdLoop (c: ChildProcess, on: boolean): ChildProcess {
  for (const h of [c, c.stdin, c.stdout, c.stderr] as Array<{ ref?: () => void, unref?: () => void } | null>) {
    if (on) h?.ref?.()
    else h?.unref?.()
  }
  return c
}

function idle (c: ChildProcess): ChildProcess {
  c.stdin?.on('error', () => undefined) // EPIPE when it died while idle: alive() turns it away, or its exit says so
  return holdLoop(c, false)
}

export class ShellPool {
  private readonly commands: ChildProcess[] = []
  private readonly waiters: ChildProcess[] = []
  private timer: NodeJS.Timeout | undefined
  private closed = false

  /** `waiterScript`: the script every waiter runs (see capsule-process.ts). */
  constructor (private readonly waiterScript: string, private readonly size = SHELL_POOL_SIZE) {}

  /** Fills the pool now (at the runtime's start). */
  fill (): void {
    if (this.closed) return
    while (this.commands.length < this.size) this.commands.push(idle(spawn('/bin/sh', ['-c', COMMAND_SHELL, 'bolt-shell'], { stdio: ['pipe', 'pipe', 'pipe'] })))
    while (this.waiters.length < this.size) this.waiters.push(this.spawnWaiterShell())
  }

  /** Refills after REFILL_DELAY_MS, unless asked again meanwhile (a burst of starts refills once, after it). */
  refillSoon (): void {
    clearTimeout(this.timer)
    if (this.closed) return
    this.timer = setTimeout(() => { this.fill() }, REFILL_DELAY_MS)
    this.timer.unref()
  }

  /** Holds off a pending refill while a start runs. */
  hold (): void {
    clearTimeout(this.timer)
    this.timer = undefined
  }

  private spawnWaiterShell (): ChildProcess {
    return idle(spawn('/bin/sh', ['-c', WAITER_SHELL, 'bolt-shell', this.waiterScript], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] }))
  }

  private take (from: ChildProcess[]): ChildProcess | undefined {
    for (let c = from.shift(); c !== undefined; c = from.shift()) {
      if (alive(c)) return c
    }
    return undefined
  }

  /** As runCommand (without `input` or `env`), through an idle shell when there is one. */
  readonly run = async (cmd: string, args: string[], opts: CommandOptions = {}): Promise<CommandResult> => {
    const lines = argLines([cmd, ...args], opts.cwd ?? '')
    const shell = opts.input === undefined && opts.env === undefined && lines !== undefined ? this.take(this.commands) : undefined
    if (shell === undefined) return await runCommand(cmd, args, opts)
    holdLoop(shell, true)
    const signal = commandSignal(opts)
    const kill = (): void => { shell.kill('SIGKILL') }
    signal.addEventListener('abort', kill, { once: true })
    try {
      const result = settle(shell, opts.maxBytes)
      shell.stdin?.end(lines)
      return await result
    } finally {
      signal.removeEventListener('abort', kill)
    }
  }

  /**
   * A waiter shell given `args` (the capsule dir, then the runtime's argv),
   * or undefined when none is idle (the caller spawns one itself). Its stdin
   * stays open for the waiter's own "go".
   */
  takeWaiter (args: string[]): ChildProcess | undefined {
    const lines = argLines(args)
    const shell = lines !== undefined ? this.take(this.waiters) : undefined
    shell?.stdin?.write(lines)
    return shell
  }

  /** Ends every idle shell (EOF on its stdin). */
  close (): void {
    this.closed = true
    clearTimeout(this.timer)
    for (const c of [...this.commands.splice(0), ...this.waiters.splice(0)]) c.stdin?.end()
  }
}
