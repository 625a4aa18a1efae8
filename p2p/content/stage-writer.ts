// An object's bytes as they arrive (an S3 body): cut into FastCDC chunks in
// a reusable window and each chunk staged in the blob store (written, not
// fsync'd, invisible) until ObjectStore.commitObject stores them all or
// abort deletes them.
import type { BlobStore, StagedBlob } from './blob-store.js'
import { ManifestError } from './errors.js'
import { CdcWindow, giveWindow, takeWindow, type CdcParams } from './fastcdc.js'

/** Bound on chunks per object (at 1 MiB average, about 1 TiB). */
export const MAX_OBJECT_CHUNKS = 1_000_000

/** An object's chunks written by `stageObject`, not yet stored. */
export interface StagedObject {
  chunks: StagedBlob[]
  size: number
}

/** See ObjectStore.stageWriter. */
export interface StageWriter {
  write: (piece: Uint8Array) => Promise<void> | undefined
  end: () => Promise<StagedObject>
  abort: () => Promise<void>
}

export class ObjectStageWriter implements StageWriter {
  private readonly staged: StagedBlob[] = []
  private size = 0
  private readonly buffer: Uint8Array
  private readonly w: CdcWindow
  private busy: Promise<void> | undefined
  private done = false

  constructor (private readonly store: BlobStore, cdc: CdcParams) {
    this.buffer = takeWindow(cdc.maxSize * 2)
    this.w = new CdcWindow(cdc, this.buffer)
  }

  write (piece: Uint8Array): Promise<void> | undefined {
    if (this.done || this.busy !== undefined) throw new Error('stage writer: write after end, or before the last write finished')
    const off = this.w.fill(piece, 0)
    if (off === piece.length) return undefined
    this.busy = this.drain(piece, off).finally(() => { this.busy = undefined })
    return this.busy
  }

  private async drain (piece: Uint8Array, off: number): Promise<void> {
    while (off < piece.length) {
      for (let c = this.w.next(false); c !== undefined; c = this.w.next(false)) await this.stage(c)
      off = this.w.fill(piece, off)
    }
  }

  private async stage (chunk: Uint8Array): Promise<void> {
    if (this.done) throw new Error('stage writer: aborted')
    if (this.staged.length >= MAX_OBJECT_CHUNKS) throw new ManifestError(`object: more than ${MAX_OBJECT_CHUNKS} chunks`)
    this.staged.push(await this.store.stage(chunk))
    this.size += chunk.length
  }

  async end (): Promise<StagedObject> {
    if (this.done || this.busy !== undefined) throw new Error('stage writer: end after end, or before the last write finished')
    try {
      this.busy = (async () => { for (let c = this.w.next(true); c !== undefined; c = this.w.next(true)) await this.stage(c) })()
      await this.busy
      this.busy = undefined
    } catch (err) {
      this.busy = undefined
      await this.abort()
      throw err
    }
    this.release()
    return { chunks: this.staged, size: this.size }
  }

  /** Deletes what was staged (after the write in flight, if any). */
  async abort (): Promise<void> {
    if (this.done) return
    this.done = true
    await this.busy?.catch(() => {}) // its failure is the caller's to report; here only its staged file matters
    await this.store.discardStaged(this.staged)
    this.release()
  }

  private release (): void {
    this.done = true
    giveWindow(this.buffer)
  }
}
