// The whole-blob sha256 of a partial blob, computed in a worker thread while
// pieces arrive (see blob-hasher-worker.ts); small blobs are hashed inline at
// completion, where a thread would cost more than it saves.
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { Worker } from 'node:worker_threads'

/** Blobs at least this large get a hashing thread. */
export const HASHER_THREAD_MIN_BYTES = 16 * 1024 * 1024

export interface BlobHasher {
  pieceWritten: (index: number) => void
  /** The digest of the whole file; call once every piece is written. */
  digest: () => Promise<string>
  terminate: () => Promise<void>
}

export function createBlobHasher (path: string, size: number, pieceSize: number, pieceCount: number): BlobHasher {
  if (size < HASHER_THREAD_MIN_BYTES) return inlineHasher(path, size)
  const worker = new Worker(new URL('./blob-hasher-worker.js', import.meta.url), { workerData: { path, size, pieceSize, pieceCount } })
  worker.unref()
  let failed: Error | undefined
  worker.on('error', (err) => { failed = err })
  return {
    pieceWritten: (index) => { if (failed === undefined) worker.postMessage({ t: 'piece', index }) },
    digest: async () => {
      if (failed !== undefined) throw failed
      try {
        return await new Promise<string>((resolve, reject) => {
          worker.once('message', (m: { t: string, digest?: string, message?: string }) => {
            if (m.t === 'digest' && m.digest !== undefined) resolve(m.digest)
            else reject(new Error(`blob hasher: ${m.message ?? 'failed'}`))
          })
          worker.once('error', reject)
          worker.postMessage({ t: 'finish' })
        })
      } finally {
        await worker.terminate()
      }
    },
    terminate: async () => { await worker.terminate() }
  }
}

function inlineHasher (path: string, size: number): BlobHasher {
  return {
    pieceWritten: () => {},
    digest: async () => {
      const hash = createHash('sha256')
      const fh = await open(path, 'r')
      try {
        const buf = new Uint8Array(Math.max(1, Math.min(4 * 1024 * 1024, size)))
        let pos = 0
        while (pos < size) {
          const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos)
          if (bytesRead === 0) break
          hash.update(buf.subarray(0, bytesRead))
          pos += bytesRead
        }
      } finally {
        await fh.close()
      }
      return `sha256:${hash.digest('hex')}`
    },
    terminate: async () => {}
  }
}
