// A blob being pulled piece by piece: `partial/<hex>/data` (pieces written
// at their offsets) and `partial/<hex>/state` (have-bitfield and the hash of
// each held piece). A piece's bytes are fsync'd before its bit is persisted,
// so after kill -9 every bit set names a piece that is on disk; the blob
// becomes visible only by `complete()`, after its whole digest was checked.
import { createHash } from 'node:crypto'
import { open, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { encode } from 'cbor-x'
import { z } from 'zod'
import { Bitfield } from './bitfield.js'
import { DigestMismatchError, SizeMismatchError } from './errors.js'
import { HASH_BYTES, pieceCount, pieceRange, type PieceManifest } from './pieces.js'
import { writeFileAtomic } from './fs-atomic.js'

const Bytes = z.custom<Uint8Array>(v => v instanceof Uint8Array, { message: 'expected bytes' })

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
  private done = false
  private readonly listeners = new Set<(index: number) => void>()

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
    } catch {
      fh = await open(path, 'w+')
    }
    await fh.truncate(init.size)
    return new PartialBlob(init, fh)
  }

  get dataPath (): string { return join(this.init.dir, 'data') }

  isComplete (): boolean { return this.have.count() === this.pieceCount }

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

  /** Stores piece `index` (already verified by the caller against `hash`). */
  async writePiece (index: number, data: Uint8Array, hash: Uint8Array): Promise<void> {
    const fh = this.handle()
    const { start, length } = pieceRange(this.size, this.pieceSize, index)
    if (data.length !== length) throw new SizeMismatchError(`piece ${index} of ${this.digest} is ${data.length} bytes, expected ${length}`)
    if (this.have.get(index)) return
    let off = 0
    while (off < length) off += (await fh.write(data, off, length - off, start + off)).bytesWritten
    await fh.datasync()
    if (this.done) return
    this.have.set(index)
    this.hashes.set(hash, index * HASH_BYTES)
    await this.persistState()
    for (const l of this.listeners) l(index)
  }

  async readPiece (index: number): Promise<Uint8Array> {
    const fh = this.handle()
    if (!this.have.get(index)) throw new RangeError(`piece ${index} of ${this.digest} is not held`)
    const { start, length } = pieceRange(this.size, this.pieceSize, index)
    const buf = new Uint8Array(length)
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
    const body = encode({ size: this.size, pieceSize: this.pieceSize, have: this.have.bytes, hashes: this.hashes })
    const w = this.stateWrite.then(async () => await writeFileAtomic(join(this.init.dir, 'state'), body, this.init.tmpDir))
    this.stateWrite = w.catch(() => {})
    await w
  }

  /**
   * Checks the whole blob against its digest and makes it visible. On a
   * mismatch the partial is reset (every piece dropped) and
   * DigestMismatchError is thrown.
   */
  async complete (): Promise<void> {
    if (!this.isComplete()) throw new Error(`partial ${this.digest} has ${this.have.count()}/${this.pieceCount} pieces`)
    const fh = this.handle()
    const hash = createHash('sha256')
    const buf = new Uint8Array(Math.min(4 * 1024 * 1024, Math.max(1, this.size)))
    let pos = 0
    while (pos < this.size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, this.size - pos), pos)
      if (bytesRead === 0) break
      hash.update(buf.subarray(0, bytesRead))
      pos += bytesRead
    }
    const got = `sha256:${hash.digest('hex')}`
    if (got !== this.digest) {
      for (let i = 0; i < this.pieceCount; i++) this.have.set(i, false)
      this.hashes.fill(0)
      await this.persistState()
      throw new DigestMismatchError(`assembled blob hashes to ${got}, expected ${this.digest}`)
    }
    await fh.sync()
    await this.stateWrite
    this.done = true
    await fh.close()
    this.fh = undefined
    await this.init.onComplete(this.dataPath)
  }

  async discard (): Promise<void> {
    this.done = true
    await this.stateWrite
    await this.fh?.close()
    this.fh = undefined
    await this.init.onDiscard()
  }

  async close (): Promise<void> {
    await this.stateWrite
    await this.fh?.close()
    this.fh = undefined
  }
}
