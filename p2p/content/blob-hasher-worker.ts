// Worker thread of BlobHasher: hashes a partial blob's data file front to
// back as pieces are reported written, so neither the file read nor the
// sha256 runs on the agent's event loop (which also keeps SWIM and Raft time).
import { createHash } from 'node:crypto'
import { closeSync, openSync, readSync } from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'

interface Init { path: string, size: number, pieceSize: number, pieceCount: number }
type Msg = { t: 'piece', index: number } | { t: 'finish' }

const init = workerData as Init
const fd = openSync(init.path, 'r')
const have = new Uint8Array(init.pieceCount)
const hash = createHash('sha256')
const buf = Buffer.allocUnsafe(Math.max(1, Math.min(init.pieceSize, init.size)))
let next = 0

function hashPiece (i: number): void {
  const start = i * init.pieceSize
  const len = Math.min(init.pieceSize, init.size - start)
  let off = 0
  while (off < len) {
    const n = readSync(fd, buf, off, len - off, start + off)
    if (n === 0) throw new Error(`data file ends at ${start + off}, expected ${init.size} bytes`)
    off += n
  }
  hash.update(buf.subarray(0, len))
}

function advance (): void {
  while (next < init.pieceCount && have[next] === 1) hashPiece(next++)
}

parentPort?.on('message', (m: Msg) => {
  try {
    if (m.t === 'piece') {
      if (m.index >= 0 && m.index < init.pieceCount) have[m.index] = 1
      advance()
      return
    }
    have.fill(1)
    advance()
    closeSync(fd)
    parentPort?.postMessage({ t: 'digest', digest: `sha256:${hash.digest('hex')}` })
  } catch (err) {
    parentPort?.postMessage({ t: 'error', message: (err as Error).message })
  }
})
