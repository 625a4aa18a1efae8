// The piece manifests of complete blobs (each piece's hash, for serving
// pieces to peers): derived from the blob on first use, kept in
// meta/pieces/<hex>.<pieceSize> and the most used in memory, since every
// answer to a peer's have? for a complete blob carries one.
import { open, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { decode, encode } from 'cbor-x'
import { digestHex } from './digest.js'
import { SizeMismatchError } from './errors.js'
import { writeFileAtomic } from './fs-atomic.js'
import { HASH_BYTES, hashPiece, pieceCount, type PieceManifest, PieceManifestSchema } from './pieces.js'

/** Piece manifests kept in memory (a few KiB each). */
const MANIFEST_CACHE_ENTRIES = 1024

export class PieceManifests {
  private readonly cache = new Map<string, PieceManifest>()

  /** `dir` holds the manifest files; `tmpDir` is where they are written before their rename. */
  constructor (private readonly dir: string, private readonly tmpDir: string) {}

  /** The manifest of the complete blob `digest` of `size` bytes at `path`: from memory, its file, or hashed from the blob (and saved). */
  async get (digest: string, size: number, path: string, pieceSize: number): Promise<PieceManifest> {
    const key = `${digest}.${pieceSize}`
    const cached = this.cache.get(key)
    if (cached !== undefined && cached.size === size) return cached
    try {
      const m = PieceManifestSchema.parse(decode(await readFile(this.file(digest, pieceSize))))
      if (m.digest === digest && m.size === size) { this.remember(m); return m }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as Error).name !== 'ZodError') throw err
    }
    const m: PieceManifest = { digest, size, pieceSize, hashes: await hashPieces(digest, size, path, pieceSize) }
    await this.save(m)
    return m
  }

  async save (m: PieceManifest): Promise<void> {
    this.remember(m)
    await writeFileAtomic(this.file(m.digest, m.pieceSize), encode(m), this.tmpDir)
  }

  /** Forgets every manifest of `digest` (the blob was removed), in memory and on disk. */
  async forget (digest: string): Promise<void> {
    for (const k of [...this.cache.keys()]) if (k.startsWith(digest + '.')) this.cache.delete(k)
    const hex = digestHex(digest)
    for (const name of await readdir(this.dir)) if (name.startsWith(hex + '.')) await rm(join(this.dir, name), { force: true })
  }

  private file (digest: string, pieceSize: number): string {
    return join(this.dir, `${digestHex(digest)}.${pieceSize}`)
  }

  private remember (m: PieceManifest): void {
    if (this.cache.size >= MANIFEST_CACHE_ENTRIES) {
      const oldest = this.cache.keys().next().value
      if (oldest !== undefined) this.cache.delete(oldest)
    }
    this.cache.set(`${m.digest}.${m.pieceSize}`, m)
  }
}

/** Each piece's hash, read piece by piece from the blob's file. */
async function hashPieces (digest: string, size: number, path: string, pieceSize: number): Promise<Uint8Array> {
  const n = pieceCount(size, pieceSize)
  const hashes = new Uint8Array(n * HASH_BYTES)
  const fh = await open(path, 'r')
  try {
    const buf = new Uint8Array(pieceSize)
    for (let i = 0; i < n; i++) {
      const len = Math.min(pieceSize, size - i * pieceSize)
      let off = 0
      while (off < len) {
        const { bytesRead } = await fh.read(buf, off, len - off, i * pieceSize + off)
        if (bytesRead === 0) throw new SizeMismatchError(`blob ${digest} is shorter than recorded`)
        off += bytesRead
      }
      hashes.set(hashPiece(buf.subarray(0, len)), i * HASH_BYTES)
    }
  } finally {
    await fh.close()
  }
  return hashes
}
