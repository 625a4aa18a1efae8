// Running a short-lived native command (runc, mknod, nvidia-smi...) with its
// output captured up to a bound, a timeout, and an AbortSignal.
import { spawn, type ChildProcess } from 'node:child_process'

/** Output kept per stream; beyond it the tail is dropped and `truncated` set. */
export const MAX_CAPTURE_BYTES = 1024 * 1024
export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000

export interface CommandResult {
  exitCode: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  truncated: boolean
}

export interface CommandOptions {
  input?: string
  timeoutMs?: number
  signal?: AbortSignal
  env?: NodeJS.ProcessEnv
  maxBytes?: number
  cwd?: string
}

/** Runs `cmd args`; resolves with its exit status (never rejects on a non-zero exit), rejects when it cannot be spawned. */
export async function runCommand (cmd: string, args: string[], opts: CommandOptions = {}): Promise<CommandResult> {
  const { input, env, cwd } = opts
  const signal = commandSignal(opts)
  const child = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: env ?? process.env, cwd, signal, killSignal: 'SIGKILL' })
  if (input !== undefined && child.stdin !== null) child.stdin.end(input)
  return await settle(child, opts.maxBytes)
}

/** The signal that ends a command: the caller's, or its timeout. */
export function commandSignal (opts: Pick<CommandOptions, 'signal' | 'timeoutMs'>): AbortSignal {
  const timeout = AbortSignal.timeout(opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS)
  return opts.signal === undefined ? timeout : AbortSignal.any([opts.signal, timeout])
}

/** Collects a started child's output (up to `maxBytes` a stream) until it ends. */
export async function settle (child: ChildProcess, maxBytes = MAX_CAPTURE_BYTES): Promise<CommandResult> {
  return await new Promise((resolve, reject) => {
    const out: Buffer[] = []
    const err: Buffer[] = []
    let outLen = 0
    let errLen = 0
    let truncated = false
    child.stdout?.on('data', (b: Buffer) => { if (outLen < maxBytes) { out.push(b); outLen += b.length } else truncated = true })
    child.stderr?.on('data', (b: Buffer) => { if (errLen < maxBytes) { err.push(b); errLen += b.length } else truncated = true })
    let spawnError: Error | undefined
    child.on('error', e => { spawnError = e })
    child.on('close', (code, sig) => {
      if (spawnError !== undefined && code === null && sig === null) { reject(spawnError); return }
      if (spawnError !== undefined && (spawnError as NodeJS.ErrnoException).code === 'ENOENT') { reject(spawnError); return }
      resolve({
        exitCode: code,
        signal: sig,
        stdout: Buffer.concat(out).toString('utf8').slice(0, maxBytes),
        stderr: Buffer.concat(err).toString('utf8').slice(0, maxBytes),
        truncated
      })
    })
  })
}

/** How a command is run: runCommand, or a pre-spawned shell (shell-pool.ts). */
export type CommandRunner = (cmd: string, args: string[], opts?: CommandOptions) => Promise<CommandResult>

/** Runs a command that must succeed; throws `makeError(message)` with its stderr otherwise. */
export async function mustRun (cmd: string, args: string[], makeError: (msg: string, r: CommandResult | undefined) => Error, opts: CommandOptions = {}, run: CommandRunner = runCommand): Promise<CommandResult> {
  let r: CommandResult
  try {
    r = await run(cmd, args, opts)
  } catch (err) {
    throw makeError(`${cmd} could not be started: ${(err as Error).message}`, undefined)
  }
  if (r.exitCode !== 0) throw makeError(`${cmd} ${args.join(' ')} failed (exit ${r.exitCode ?? r.signal ?? '?'}): ${r.stderr.trim()}`, r)
  return r
}
