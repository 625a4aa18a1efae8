// A blob being pulled piece by piece: `partial/<hex>/data` (pieces written
// at their offsets) and `partial/<hex>/state` (have-bitfield and the hash of
// each held piece). A piece's bytes are fsync'd before its bit is persisted,
// (in batches) so after kill -9 every bit set names a piece on disk; the blob
// becomes visible only by `complete()`, after its whole digest was checked.
import { open, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { encode } from 'cbor-x'
import { z } from 'zod'
import { Bitfield } from './bitfield.js'
import { createBlobHasher, type BlobHasher, type StoredPiece } from './blob-hasher.js'
import { DigestMismatchError, SizeMismatchError } from './errors.js'
import { bytesEqual, type ChunkList, HASH_BYTES, hashPiece, pieceCount, pieceRange, type PieceManifest } from './pieces.js'
import { writeFileAtomic } from './fs-atomic.js'

const Bytes = z.custom<Uint8Array>(v => v instanceof Uint8Array, { message: 'expected bytes' })

/** Persist the have-bitfield after this many new pieces… */
export const FLUSH_EVERY_PIECES = 8
/** …or this long after the first unpersisted one. */
export const FLUSH_AFTER_MS = 250

export const PartialStateSchema = z.object({
  size: z.number().int().nonnegative(),
  pieceSize: z.number().int().positive(),
  have: Bytes,
  hashes: Bytes
})

export interface PartialBlobInit {
  digest: string
  dir: string
  size: number
  pieceSize: number
  state?: { have: Bitfield, hashes: Uint8Array }
  tmpDir: string
  onComplete: (dataPath: string) => Promise<void>
  onDiscard: () => Promise<void>
  /** Told when a flush behind the pull fails (nobody awaits it). */
  log?: (msg: string) => void
}

export class PartialBlob {
  readonly digest: string
  readonly size: number
  readonly pieceSize: number
  readonly pieceCount: number
  readonly have: Bitfield
  /** sha256 of each held piece (zeros where not held). */
  readonly hashes: Uint8Array
  private fh: FileHandle | undefined
  private stateWrite: Promise<void> = Promise.resolve()
  private unflushed = 0
  private flushTimer: NodeJS.Timeout | undefined
  private readonly writing = new Set<number>()
  private hasher: BlobHasher | undefined
  private done = false
  private readonly listeners = new Set<(index: number) => void>()
  private dropped = 0

  private constructor (private readonly init: PartialBlobInit, fh: FileHandle) {
    this.digest = init.digest
    this.size = init.size
    this.pieceSize = init.pieceSize
    this.pieceCount = pieceCount(init.size, init.pieceSize)
    this.have = init.state?.have ?? new Bitfield(this.pieceCount)
    this.hashes = init.state?.hashes ?? new Uint8Array(this.pieceCount * HASH_BYTES)
    this.fh = fh
  }

  static async open (init: PartialBlobInit): Promise<PartialBlob> {
    const path = join(init.dir, 'data')
    let fh: FileHandle
    try {
      fh = await open(path, 'r+')
    } catch (err) {
      // Only a missing file is made anew: 'w+' truncates, which would zero pieces the state says are held.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      fh = await open(path, 'w+')
    }
    await fh.truncate(init.size)
    return new PartialBlob(init, fh)
  }

  get dataPath (): string { return join(this.init.dir, 'data') }

  isComplete (): boolean { return this.have.count() === this.pieceCount }

  /**
   * How many times the assembled blob failed its digest and every piece was
   * dropped: a reader that sent pieces on before a reset sent bytes no check
   * covers.
   */
  get resets (): number { return this.dropped }

  /** Called with the index of every piece stored from now on. */
  onPiece (fn: (index: number) => void): () => void {
    this.listeners.add(fn)
    return () => { this.listeners.delete(fn) }
  }

  /** Adopts the hashes of a piece manifest for pieces not yet held (so they can be served with hashes later). */
  adoptManifest (m: PieceManifest): void {
    if (m.size !== this.size || m.pieceSize !== this.pieceSize) return
    for (let i = 0; i < this.pieceCount; i++) {
      if (!this.have.get(i)) this.hashes.set(m.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), i * HASH_BYTES)
    }
  }

  pieceHashOf (index: number): Uint8Array {
    return this.hashes.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES)
  }

  /**
   * Stores piece `index` (already verified by the caller against `hash`).
   * The bit is set in memory at once (so the piece can be served); it is
   * persisted by a later flush, after an fdatasync that covers the piece —
   * so after a crash every persisted bit names a piece on disk.
   */
  async writePiece (index: number, data: Uint8Array, hash: Uint8Array): Promise<void> {
    const fh = this.handle()
    const { start, length } = pieceRange(this.size, this.pieceSize, index)
    if (data.length !== length) throw new SizeMismatchError(`piece ${index} of ${this.digest} is ${data.length} bytes, expected ${length}`)
    if (this.have.get(index) || this.writing.has(index)) return
    this.writing.add(index)
    try {
      let off = 0
      while (off < length) off += (await fh.write(data, off, length - off, start + off)).bytesWritten
    } finally {
      this.writing.delete(index)
    }
    if (this.done) return
    this.wholeHasher().pieceWritten(index)
    this.pieceStored(index, hash)
  }

  /**
   * Checks piece `index` against `expected` (its length always; its hash
   * when one is known) and stores it only if it passes, so a bad byte never
   * reaches the file. `piece` may be the chunks read off a stream. Large
   * blobs do the hashing and writing on their hasher thread.
   */
  async storePiece (index: number, piece: Uint8Array | ChunkList, expected: Uint8Array | undefined): Promise<{ ok: boolean, hash: Uint8Array }> {
    const { length } = pieceRange(this.size, this.pieceSize, index)
    const hasher = this.wholeHasher()
    if (hasher.store === undefined || this.done || this.have.get(index) || this.writing.has(index)) {
      const data = piece instanceof Uint8Array ? piece : piece.subarray()
      const hash = hashPiece(data)
      const ok = data.length === length && (expected === undefined || bytesEqual(hash, expected))
      if (ok) await this.writePiece(index, data, hash)
      return { ok, hash }
    }
    this.writing.add(index)
    let r: StoredPiece
    try {
      r = await hasher.store(index, piece, expected)
    } finally {
      this.writing.delete(index)
    }
    if (r.written && !this.done) this.pieceStored(index, r.hash)
    return { ok: r.ok, hash: r.hash }
  }

  /** Bookkeeping after piece `index` is in the file: the bit, its hash, a flush in time, listeners. */
  private pieceStored (index: number, hash: Uint8Array): void {
    this.have.set(index)
    this.hashes.set(hash, index * HASH_BYTES)
    this.unflushed++
    // The flush (an fdatasync, then the state file) runs behind the pull:
    // waiting for it here would hold a request slot for a disk write.
    if (this.unflushed >= FLUSH_EVERY_PIECES) this.flush().catch(this.flushFailed)
    else this.scheduleFlush()
    for (const l of this.listeners) l(index)
  }

  /** fdatasync the data, then persist the have-bitfield as it was before the sync. */
  async flush (): Promise<void> {
    if (this.flushTimer !== undefined) { clearTimeout(this.flushTimer); this.flushTimer = undefined }
    if (this.unflushed === 0 || this.fh === undefined) { await this.stateWrite; return }
    this.unflushed = 0
    const have = new Uint8Array(this.have.bytes)
    const hashes = new Uint8Array(this.hashes)
    const fh = this.fh
    const w = this.stateWrite.then(async () => {
      await fh.datasync()
      await writeFileAtomic(join(this.init.dir, 'state'), encode({ size: this.size, pieceSize: this.pieceSize, have, hashes }), this.init.tmpDir)
    })
    this.stateWrite = w.catch(() => {}) // this caller gets the error from `await w`; the chain goes on for the next write
    await w
  }

  /** A flush nobody awaits failed: the next flush writes the whole bitfield again; a restart before it fetches those pieces again. */
  private readonly flushFailed = (err: Error): void => {
    if (this.done) return // completed or discarded meanwhile: its state file no longer matters
    this.init.log?.(`partial ${this.digest}: persisting its have-bitfield failed (${err.message}); pieces since the last good flush are fetched again after a restart`)
  }

  private scheduleFlush (): void {
    if (this.flushTimer !== undefined) return
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined
      this.flush().catch(this.flushFailed)
    }, FLUSH_AFTER_MS)
    this.flushTimer.unref()
  }

  /** The bytes of held piece `index`: read into the start of `into` when given (it must be large enough), else into a new buffer. */
  async readPiece (index: number, into?: Uint8Array): Promise<Uint8Array> {
    const fh = this.handle()
    if (!this.have.get(index)) throw new RangeError(`piece ${index} of ${this.digest} is not held`)
    const { start, length } = pieceRange(this.size, this.pieceSize, index)
    if (into !== undefined && into.byteLength < length) throw new RangeError(`a ${into.byteLength}-byte buffer cannot hold piece ${index} (${length} bytes)`)
    let buf: Uint8Array
    if (into !== undefined) {
      buf = into.subarray(0, length)
    } else {
      // Not zero-filled (4 MiB of zeroes per piece served, on the event loop): every byte is read below or the call throws.
      const raw = Buffer.allocUnsafeSlow(length)
      buf = new Uint8Array(raw.buffer, raw.byteOffset, length)
    }
    let off = 0
    while (off < length) {
      const { bytesRead } = await fh.read(buf, off, length - off, start + off)
      if (bytesRead === 0) throw new SizeMismatchError(`partial ${this.digest} is shorter than its size`)
      off += bytesRead
    }
    return buf
  }

  private handle (): FileHandle {
    if (this.fh === undefined) throw new Error(`partial blob ${this.digest} is closed`)
    return this.fh
  }

  private async persistState (): Promise<void> {
    this.unflushed = 0
    const body = encode({ size: this.size, pieceSize: this.pieceSize, have: this.have.bytes, hashes: this.hashes })
    const w = this.stateWrite.then(async () => await writeFileAtomic(join(this.init.dir, 'state'), body, this.init.tmpDir))
    this.stateWrite = w.catch(() => {}) // this caller gets the error from `await w`; the chain goes on for the next write
    await w
  }

  private wholeHasher (): BlobHasher {
    if (this.hasher === undefined) {
      this.hasher = createBlobHasher(this.dataPath, this.size, this.pieceSize, this.pieceCount)
      for (let i = 0; i < this.pieceCount; i++) if (this.have.get(i)) this.hasher.pieceWritten(i)
    }
    return this.hasher
  }

  /**
   * Checks the whole blob against its digest and makes it visible. On a
   * mismatch the partial is reset (every piece dropped) and
   * DigestMismatchError is thrown.
   */
  async complete (): Promise<void> {
    if (!this.isComplete()) throw new Error(`partial ${this.digest} has ${this.have.count()}/${this.pieceCount} pieces`)
    const fh = this.handle()
    const hasher = this.wholeHasher()
    this.hasher = undefined
    const got = await hasher.digest()
    if (got !== this.digest) {
      for (let i = 0; i < this.pieceCount; i++) this.have.set(i, false)
      this.hashes.fill(0)
      this.dropped++
      await this.persistState()
      throw new DigestMismatchError(`assembled blob hashes to ${got}, expected ${this.digest}`)
    }
    if (this.flushTimer !== undefined) { clearTimeout(this.flushTimer); this.flushTimer = undefined }
    await fh.sync()
    await this.stateWrite
    this.done = true
    await fh.close()
    this.fh = undefined
    await this.init.onComplete(this.dataPath)
  }

  async discard (): Promise<void> {
    this.done = true
    await this.hasher?.terminate()
    this.hasher = undefined
    if (this.flushTimer !== undefined) { clearTimeout(this.flushTimer); this.flushTimer = undefined }
    await this.stateWrite
    await this.fh?.close()
    this.fh = undefined
    await this.init.onDiscard()
  }

  async close (): Promise<void> {
    await this.flush().catch(this.flushFailed)
    await this.hasher?.terminate()
    this.hasher = undefined
    await this.stateWrite
    await this.fh?.close()
    this.fh = undefined
  }
}
