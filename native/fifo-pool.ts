// FIFO pairs made ahead of time: Node cannot mkfifo(2) itself, and a mkfifo
// process per capsule start is a spawn on the start path. Each run takes a
// ready pair (two renames); the runtime refills the pool after its starts,
// through its shell pool, so no start waits behind a refill's fork.
import { randomBytes } from 'node:crypto'
import { mkdir, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { mustRun, runCommand, type CommandRunner } from './command.js'
import { WaiterError } from './errors.js'

/** Pairs kept ready: a burst of this many starts takes no mkfifo of its own. */
export const FIFO_POOL_SIZE = 8

export class FifoPool {
  private ready: string[] = []
  private refilling: Promise<void> | undefined
  private closed = false

  constructor (private readonly dir: string) {}

  async init (): Promise<void> {
    await rm(this.dir, { recursive: true, force: true }) // left by a previous agent
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    await this.fill()
  }

  /** Tops the pool up to FIFO_POOL_SIZE pairs in one mkfifo process (run by `run`); one fill at a time. */
  async fill (run: CommandRunner = runCommand): Promise<void> {
    this.refilling ??= this.refill(run).finally(() => { this.refilling = undefined })
    await this.refilling
  }

  private async refill (run: CommandRunner): Promise<void> {
    const want = FIFO_POOL_SIZE - this.ready.length
    if (want <= 0 || this.closed) return
    const names = Array.from({ length: want }, () => randomBytes(6).toString('hex'))
    await mustRun('mkfifo', ['-m', '600', ...names.flatMap(n => [join(this.dir, `${n}.out`), join(this.dir, `${n}.err`)])], m => new WaiterError(m), {}, run)
    this.ready.push(...names)
  }

  /** Moves a ready pair to `<dir>/stdout.fifo` and `<dir>/stderr.fifo`, or makes one there with `run` when the pool is empty. */
  async take (dir: string, run: CommandRunner = runCommand): Promise<void> {
    const name = this.ready.shift()
    if (name === undefined) {
      await mustRun('mkfifo', ['-m', '600', join(dir, 'stdout.fifo'), join(dir, 'stderr.fifo')], m => new WaiterError(m), {}, run)
      return
    }
    await rename(join(this.dir, `${name}.out`), join(dir, 'stdout.fifo'))
    await rename(join(this.dir, `${name}.err`), join(dir, 'stderr.fifo'))
  }

  async close (): Promise<void> {
    this.closed = true
    await this.refilling?.catch(() => undefined) // a refill that failed left nothing to close
  }
}
