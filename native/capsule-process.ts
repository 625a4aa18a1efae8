// The process side of one capsule. A detached shell (the "waiter") runs
// `<runtime> run` in the foreground and writes its exit status to a file, so
// the capsule and its exit code outlive an agent crash. Output goes through
// two FIFOs the waiter also holds open: while the agent is down the capsule
// writes into the pipe buffer instead of dying of SIGPIPE, and a restarted
// agent reopens the FIFOs and carries on logging (Docker's live-restore way).
import { spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { constants, open as openCb } from 'node:fs'
import { promisify } from 'node:util'
import { open, readFile, rm, stat, watch, writeFile, type FileHandle } from 'node:fs/promises'
import { Socket } from 'node:net'
import { join } from 'node:path'
import type { LogStream, RotatingLogWriter } from './logs.js'
import { RUNTIME_UMASK } from './oci/driver.js'
import type { ShellPool } from './shell-pool.js'

/** How often an adopted capsule's waiter is checked (it is not our child, so no exit event). */
export const ADOPTED_POLL_MS = 200
/** How long to wait, after the waiter is gone, for the last output to be logged. */
export const LOG_DRAIN_TIMEOUT_MS = 2000

export const EXIT_FILE = 'exit'
export const PID_FILE = 'pid'

// $1: capsule dir; the rest: the runtime's argv. fds 3 and 4 keep a reader on
// each FIFO for as long as the capsule runs, and are closed for the runtime.
// At the end, if no agent is attached (its pid in agent.pid is gone), what is
// still buffered in the FIFOs is saved to *.rest, since the pipes vanish with
// their last fd; an attached agent drains them itself.
export const WAITER_SCRIPT = [
  // Spawned while the bundle is still being prepared: wait for "go" on stdin (EOF: the start was called off).
  'read -r go || exit 0',
  '[ "$go" = go ] || exit 0',
  'exec 0</dev/null',
  'd=$1; shift',
  'exec 3<>"$d/stdout.fifo" 4<>"$d/stderr.fifo"',
  // The runtime's umask (the waiter keeps the agent's own for the files it writes); the subshell execs it.
  `(${RUNTIME_UMASK}; exec "$@") </dev/null >"$d/stdout.fifo" 2>"$d/stderr.fifo" 3>&- 4>&-`,
  'c=$?',
  'a=; read -r a <"$d/agent.pid" 2>/dev/null',
  'if [ -z "$a" ] || ! kill -0 "$a" 2>/dev/null; then',
  '  exec 5<"$d/stdout.fifo" 6<"$d/stderr.fifo" 3>&- 4>&-',
  '  cat <&5 >"$d/stdout.rest"; cat <&6 >"$d/stderr.rest"',
  'fi',
  // One small write (a builtin, no mv to spawn): readers only look after the waiter is gone.
  'echo "$c" >"$d/exit"',
  // And as the waiter's own status, for an agent that is its parent: the file is lost on a full disk.
  'exit "$c"'
].join('\n')

export const AGENT_PID_FILE = 'agent.pid'

/** Moves output the waiter saved while no agent was attached into the log. */
export async function collectRest (dir: string, log: RotatingLogWriter): Promise<void> {
  for (const stream of ['stdout', 'stderr'] as const) {
    const file = join(dir, `${stream}.rest`)
    // No .rest file: nothing was saved while detached. Any other failure is thrown, and the file stays for the next try.
    const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return undefined; throw err })
    if (text === undefined) continue
    if (text !== '') log.feed(stream, text)
    await rm(file, { force: true })
  }
}


/** Whether `pid` is alive and is the waiter of the capsule in `dir` (not a reused pid). */
export async function isWaiterAlive (pid: number, dir: string): Promise<boolean> {
  try {
    process.kill(pid, 0)
  } catch {
    return false // ESRCH: gone (the agent is root, so EPERM cannot hide a live waiter)
  }
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '') // exited since the kill(0): not the waiter
  return cmdline.split('\0').includes(dir)
}

/** The waiter's recorded exit code, or null when it has not written one. */
export async function readExitCode (dir: string): Promise<number | null> {
  // No exit file (or an unreadable one) is what null says: the waiter left no code. Never throws: exit must resolve.
  const text = await readFile(join(dir, EXIT_FILE), 'utf8').catch(() => undefined)
  if (text === undefined) return null
  const t = text.trim()
  if (t === '') return null
  const n = Number(t)
  return Number.isInteger(n) ? n : null
}

const openFd = promisify(openCb)

/** A non-blocking reader on a FIFO; the socket owns (and closes) the fd. */
async function openReader (fifo: string): Promise<Socket> {
  const fd = await openFd(fifo, constants.O_RDONLY | constants.O_NONBLOCK)
  return new Socket({ fd, readable: true, writable: false })
}

/**
 * A waiter spawned ahead of time, so the shell's start overlaps the bundle's
 * preparation; it runs nothing until go(), and exits quietly on cancel().
 */
export class PendingWaiter {
  private readonly child: ChildProcess
  /** Resolves when the waiter process has exited (never rejects). */
  readonly exited: Promise<void>
  /** The waiter's exit status once it has exited (the capsule's code); null while it runs, or when a signal ended it. */
  code: number | null = null

  /** `pool`: where a waiter shell may be ready (its WAITER_SCRIPT); else one is spawned here. */
  constructor (dir: string, argv: string[], pool?: ShellPool) {
    this.child = pool?.takeWaiter([dir, ...argv]) ?? spawn('/bin/sh', ['-c', WAITER_SCRIPT, 'bolt-waiter', dir, ...argv], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] })
    this.child.stdin?.on('error', () => undefined) // EPIPE if it died early: its exit says so
    this.exited = new Promise<void>(resolve => {
      this.child.once('exit', code => { this.code = code; resolve() })
      this.child.once('error', () => { resolve() })
    })
    this.child.unref()
  }

  get pid (): number | undefined {
    return this.child.pid
  }

  go (): void {
    this.child.stdin?.end('go\n')
  }

  async cancel (): Promise<void> {
    // Unref'd (it may outlive the agent) until now: awaited here, its exit must keep the loop alive.
    this.child.ref()
    this.child.stdin?.end()
    await this.exited
  }
}

export class CapsuleProcess extends EventEmitter {
  private readonly readers: Array<{ socket: Socket, done: Promise<void> }> = []
  private holds: FileHandle[] = []
  private timer: NodeJS.Timeout | undefined
  private waiter: PendingWaiter | undefined
  /** Resolves with the exit code (null if the waiter died without one) once output is drained. */
  readonly exited: Promise<number | null>
  private resolveExit!: (code: number | null) => void
  private finishing = false

  private constructor (readonly dir: string, private readonly log: RotatingLogWriter) {
    super()
    this.exited = new Promise(resolve => { this.resolveExit = resolve })
  }

  get waiterPid (): number | undefined {
    return this.waiter?.pid
  }

  private async attach (): Promise<void> {
    for (const stream of ['stdout', 'stderr'] as const) {
      const socket = await openReader(join(this.dir, `${stream}.fifo`))
      socket.setEncoding('utf8')
      socket.on('data', (s: string) => { this.log.feed(stream as LogStream, s) })
      const done = new Promise<void>(resolve => {
        socket.once('close', () => { resolve() })
        socket.once('error', () => { resolve() })
      })
      this.readers.push({ socket, done })
    }
  }

  /** Starts logging the capsule's FIFOs (already in `dir`, see FifoPool) and lets `waiter` run. */
  static async launch (dir: string, waiter: PendingWaiter, log: RotatingLogWriter): Promise<CapsuleProcess> {
    await writeFile(join(dir, AGENT_PID_FILE), String(process.pid))
    const p = new CapsuleProcess(dir, log)
    await p.attach()
    // Our own write ends keep the readers from seeing EOF before the waiter opens the FIFOs.
    for (const s of ['stdout', 'stderr']) p.holds.push(await open(join(dir, `${s}.fifo`), constants.O_WRONLY | constants.O_NONBLOCK))
    p.waiter = waiter
    void waiter.exited.then(async () => { await p.finish() })
    waiter.go()
    return p
  }

  /** Re-attaches to a capsule whose waiter survived an agent restart. */
  static async adopt (dir: string, waiterPid: number, log: RotatingLogWriter): Promise<CapsuleProcess> {
    await writeFile(join(dir, AGENT_PID_FILE), String(process.pid))
    const p = new CapsuleProcess(dir, log)
    await p.attach()
    const check = async (): Promise<void> => {
      if (!(await isWaiterAlive(waiterPid, dir))) await p.finish()
    }
    p.timer = setInterval(() => { void check() }, ADOPTED_POLL_MS)
    await check()
    return p
  }

  private async finish (): Promise<void> {
    if (this.finishing) return
    this.finishing = true
    try {
      await this.drainAndDetach()
    } finally {
      // The file first (an adopted capsule has nothing else); our own waiter's status when the file could not be written.
      this.resolveExit((await readExitCode(this.dir)) ?? this.waiter?.code ?? null)
    }
  }

  private async drainAndDetach (): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    for (const h of this.holds) await h.close().catch(() => undefined) // our own FIFO write ends: nothing to lose if one will not close
    this.holds = []
    // Every writer is gone now: the readers drain what is buffered and see EOF.
    const drained = Promise.all(this.readers.map(r => r.done))
    let t: NodeJS.Timeout | undefined
    await Promise.race([drained, new Promise<void>(resolve => { t = setTimeout(resolve, LOG_DRAIN_TIMEOUT_MS) })])
    clearTimeout(t)
    await this.detach()
    await collectRest(this.dir, this.log).catch(() => undefined) // a .rest file not moved stays in the capsule dir; exit must resolve either way
  }

  /** Stops reading (the agent is shutting down); the capsule keeps running under its waiter. */
  async detach (): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    for (const r of this.readers) {
      r.socket.destroy()
    }
    this.readers.length = 0
    for (const h of this.holds) await h.close().catch(() => undefined) // our own FIFO write ends: nothing to lose if one will not close
    this.holds = []
  }
}

/** How long run() waits for the OCI runtime to report the capsule started. */
export const START_TIMEOUT_MS = 30_000

/** Resolves once the runtime wrote the capsule's pid file (it runs) or the capsule already ended. */
export async function waitForStart (dir: string, exited: Promise<unknown>, timeoutMs = START_TIMEOUT_MS): Promise<void> {
  const ac = new AbortController()
  const pidFile = join(dir, 'pid')
  const present = async (): Promise<boolean> => await stat(pidFile).then(() => true, () => false)
  try {
    const watched = (async () => {
      // inotify on the capsule dir; the stat after arming closes the race with a file written before it.
      const events = watch(dir, { signal: ac.signal })
      if (await present()) return
      for await (const e of events) if (e.filename === 'pid' && await present()) return
    })().catch(() => undefined) // the watch ends with an abort (finally below) or a removed dir; the race also waits on exit and the timeout
    let t: NodeJS.Timeout | undefined
    await Promise.race([watched, exited.then(() => undefined, () => undefined), new Promise<void>(resolve => { t = setTimeout(resolve, timeoutMs) })])
    clearTimeout(t)
  } finally {
    ac.abort()
  }
}
