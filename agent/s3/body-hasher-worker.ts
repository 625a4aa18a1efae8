// A hashing thread of body-hasher.ts: it keeps the running digests (MD5,
// the payload's SHA-256, the client's checksums) of the S3 bodies assigned
// to it, so the event loop only cuts and writes chunks. Bytes come in slot
// buffers handed over with the message and handed back once hashed. Every
// message names its body.
import { createHash, type Hash } from 'node:crypto'
import { parentPort } from 'node:worker_threads'
import { crc32 } from 'node:zlib'
import { Crc32c } from '@aws-crypto/crc32c'

type Msg =
  | { t: 'open', id: number, algs: string[] }
  | { t: 'data', id: number, slot: ArrayBuffer, length: number }
  | { t: 'end', id: number }
  | { t: 'drop', id: number }

interface Summer { update: (b: Uint8Array) => void, digest: () => Uint8Array }

function summer (alg: string): Summer {
  if (alg === 'crc32') {
    let v = 0
    return { update: b => { v = crc32(b, v) }, digest: () => u32(v) }
  }
  if (alg === 'crc32c') {
    const c = new Crc32c()
    return { update: b => { c.update(b) }, digest: () => u32(c.digest()) }
  }
  const h: Hash = createHash(alg)
  return { update: b => { h.update(b) }, digest: () => h.digest() }
}

function u32 (v: number): Uint8Array {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(v >>> 0)
  return b
}

const bodies = new Map<number, Map<string, Summer>>()
const port = parentPort
if (port === null) throw new Error('body-hasher-worker runs only as a worker thread')

port.on('message', (m: Msg) => {
  try {
    if (m.t === 'open') { bodies.set(m.id, new Map(m.algs.map(a => [a, summer(a)]))); return }
    if (m.t === 'drop') { bodies.delete(m.id); return }
    const sums = bodies.get(m.id)
    if (m.t === 'data') {
      const view = new Uint8Array(m.slot, 0, m.length)
      if (sums !== undefined) for (const s of sums.values()) s.update(view)
      port.postMessage({ t: 'slot', id: m.id, slot: m.slot }, [m.slot])
      return
    }
    bodies.delete(m.id)
    const digests: Record<string, Uint8Array> = {}
    for (const [a, s] of sums ?? []) digests[a] = s.digest()
    port.postMessage({ t: 'digests', id: m.id, digests })
  } catch (err) {
    port.postMessage({ t: 'error', id: m.id, message: (err as Error).message })
  }
})
