// A hashing thread of body-hasher.ts: it keeps the running digests (MD5,
// the payload's SHA-256, the client's checksums) of the S3 bodies assigned
// to it, so the event loop only cuts and writes chunks. Bytes come in slot
// buffers handed over with the message and handed back once hashed. Every
// message names its body.
import { parentPort } from 'node:worker_threads'
import { summer, type Summer } from './summer.js'

type Msg =
  | { t: 'open', id: number, algs: string[] }
  | { t: 'data', id: number, slot: ArrayBuffer, length: number }
  | { t: 'end', id: number }
  | { t: 'drop', id: number }


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
