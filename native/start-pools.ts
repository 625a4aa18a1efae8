// What a capsule start takes ready-made instead of forking for it: shells
// (the waiter, the mount), FIFO pairs, and overlay rootfs for the images
// started lately. Everything is made again at a quiet moment, once no
// start has been in flight for REFILL_DELAY_MS, so no start waits behind
// those forks.
import { join } from 'node:path'
import { FifoPool } from './fifo-pool.js'
import { RootfsSpares, type SpareStore } from './image/rootfs-spares.js'
import { REFILL_DELAY_MS, ShellPool } from './shell-pool.js'

export class StartPools {
  /** Waiter and mount shells started ahead, so a start forks nothing from the agent. */
  readonly shells: ShellPool
  readonly fifos: FifoPool
  /** Overlay rootfs mounted ahead for recently started images. */
  readonly spares: RootfsSpares
  private timer: NodeJS.Timeout | undefined
  /** Starts in flight: nothing refills while one is. */
  private starting = 0
  private closed = false

  /** `dataDir`: the runtime's own; `onError`: told of what could not be made ahead (the next start then makes its own). */
  constructor (dataDir: string, waiterScript: string, images: SpareStore, private readonly onError: (err: Error) => void) {
    this.shells = new ShellPool(waiterScript)
    this.fifos = new FifoPool(join(dataDir, 'fifo-pool'))
    this.spares = new RootfsSpares(join(dataDir, 'rootfs-spares'), images)
  }

  async init (): Promise<void> {
    await this.fifos.init()
    await this.spares.init()
    this.shells.fill()
  }

  /** A start begins: the shells it takes hold the event loop, and nothing refills until every start has ended. */
  begin (): void {
    this.starting++
    this.shells.hold()
  }

  /** A start ended (either way): once none is left, everything refills soon. */
  end (): void {
    if (--this.starting > 0) return
    this.shells.refillSoon()
    clearTimeout(this.timer)
    if (this.closed) return
    this.timer = setTimeout(() => {
      if (this.starting > 0) return // the start in flight schedules it again when it ends
      void this.refill()
    }, REFILL_DELAY_MS)
    this.timer.unref()
  }

  /** Tops up the FIFO pairs and makes spares for the images just started, through pooled shells, then tops the shells up. */
  private async refill (): Promise<void> {
    // A fill that fails leaves its pool short: the next start makes its own FIFOs and rootfs.
    await this.fifos.fill(this.shells.run).catch(this.onError)
    await this.spares.fill(this.shells.run, this.onError).catch(this.onError)
    if (this.starting === 0) this.shells.fill()
  }

  async close (): Promise<void> {
    this.closed = true
    clearTimeout(this.timer)
    this.shells.close()
    await this.fifos.close()
    await this.spares.close().catch(this.onError)
  }
}
