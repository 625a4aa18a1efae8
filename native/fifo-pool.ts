// FIFO pairs made ahead of time: Node cannot mkfifo(2) itself, and a mkfifo
// process per capsule start is a spawn on the start path. Each run takes a
// ready pair (two renames) and the pool refills in the background.
import { randomBytes } from 'node:crypto'
import { mkdir, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { mustRun } from './command.js'
import { WaiterError } from './errors.js'

/** Pairs kept ready; refilled in one mkfifo process when it runs low. */
export const FIFO_POOL_SIZE = 8

export class FifoPool {
  private ready: string[] = []
  private refilling: Promise<void> | undefined
  private closed = false

  constructor (private readonly dir: string) {}

  async init (): Promise<void> {
    await rm(this.dir, { recursive: true, force: true }) // left by a previous agent
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    await this.refill()
  }

  private async refill (): Promise<void> {
    const want = FIFO_POOL_SIZE - this.ready.length
    if (want <= 0 || this.closed) return
    const names = Array.from({ length: want }, () => randomBytes(6).toString('hex'))
    await mustRun('mkfifo', ['-m', '600', ...names.flatMap(n => [join(this.dir, `${n}.out`), join(this.dir, `${n}.err`)])], m => new WaiterError(m))
    this.ready.push(...names)
  }

  private kick (): void {
    if (this.refilling !== undefined || this.closed) return
    // A refill that fails leaves the pool short: take() then makes a pair on the spot, and that failure is thrown.
    this.refilling = this.refill().catch(() => undefined).finally(() => { this.refilling = undefined })
  }

  /** Moves a ready pair to `<dir>/stdout.fifo` and `<dir>/stderr.fifo` (making one on the spot if the pool is empty). */
  async take (dir: string): Promise<void> {
    const name = this.ready.shift()
    if (this.ready.length < FIFO_POOL_SIZE / 2) this.kick()
    if (name === undefined) {
      await mustRun('mkfifo', ['-m', '600', join(dir, 'stdout.fifo'), join(dir, 'stderr.fifo')], m => new WaiterError(m))
      return
    }
    await rename(join(this.dir, `${name}.out`), join(dir, 'stdout.fifo'))
    await rename(join(this.dir, `${name}.err`), join(dir, 'stderr.fifo'))
  }

  async close (): Promise<void> {
    this.closed = true
    await this.refilling
  }
}
