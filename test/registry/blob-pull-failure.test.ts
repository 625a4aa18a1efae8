// A cluster blob GET whose pull from peers fails: before its first byte the
// client gets an error status with the reason; mid-blob the response can
// only end early, and the agent logs a warning saying why (it once ended
// silently: skopeo read EOF and no agent said anything).
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { request } from 'node:http'
import type { BlobStore } from '../../p2p/content/blob-store.js'
import { PullFailedError } from '../../p2p/content/errors.js'
import type { PullOptions } from '../../p2p/content/piece-exchange.js'
import { hashPiece, pieceCount, pieceRange } from '../../p2p/content/pieces.js'
import { AUTH, setup } from '../helpers/push-registry.js'

const PIECE = 64 * 1024

interface Logged { level: 'info' | 'warn' | 'debug', obj: Record<string, unknown>, msg: string }

function spyLog (): { entries: Logged[], log: Record<Logged['level'], (obj: object, msg: string) => void> } {
  const entries: Logged[] = []
  const at = (level: Logged['level']) => (obj: object, msg: string): void => { entries.push({ level, obj: obj as Record<string, unknown>, msg }) }
  return { entries, log: { info: at('info'), warn: at('warn'), debug: at('debug') } }
}

/** An exchange whose pull lands the first `landed` pieces of `blob`, then fails. */
function failingAfter (blob: Uint8Array, landed: number) {
  return (store: BlobStore) => ({
    probeSize: async () => blob.length,
    pull: async (digest: string, opts: PullOptions) => {
      const partial = await store.openPartial(digest, opts.size, PIECE)
      for (let i = 0; i < Math.min(landed, pieceCount(opts.size, PIECE)); i++) {
        const { start, length } = pieceRange(opts.size, PIECE, i)
        const piece = blob.subarray(start, start + length)
        await partial.writePiece(i, piece, hashPiece(piece))
      }
      throw new PullFailedError(`pull of ${digest}: every holder went away`)
    }
  })
}

/** GETs `url`; the status, the bytes that came, and whether the body arrived whole. */
async function get (url: string): Promise<{ status: number, bytes: number, complete: boolean, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = request(url, { headers: AUTH }, res => {
      const parts: Buffer[] = []
      let bytes = 0
      const done = (): void => { resolve({ status: res.statusCode ?? 0, bytes, complete: res.complete, body: Buffer.concat(parts).subarray(0, 2000).toString() }) }
      res.on('data', (c: Buffer) => { bytes += c.length; if (parts.length < 4) parts.push(c) })
      res.on('end', done)
      res.on('error', done)
      res.on('aborted', done)
    })
    req.on('error', reject)
    req.end()
  })
}

const sha = (b: Uint8Array): string => 'sha256:' + createHash('sha256').update(b).digest('hex')

t.test('the pull fails mid-blob: the body ends early and the agent warns with the reason', async t => {
  const blob = randomBytes(5 * PIECE + 17)
  const { entries, log } = spyLog()
  const { base } = await setup(t, { pieceSize: PIECE, exchange: failingAfter(blob, 2), log })
  const r = await get(`${base}/v2/team/app/blobs/${sha(blob)}`)
  t.equal(r.status, 200, 'the head went out with the first piece')
  t.notOk(r.complete, 'the body is cut short, not completed')
  t.ok(r.bytes < blob.length, `fewer bytes than the blob (${r.bytes})`)
  const warned = entries.filter(e => e.level === 'warn')
  t.equal(warned.length, 1, 'one warning')
  t.match(warned[0]?.msg, /cut short/)
  t.match(String(warned[0]?.obj.err), /every holder went away/, 'with the pull\'s reason')
  t.equal(warned[0]?.obj.digest, sha(blob))
})

t.test('the pull fails before the first piece: the client gets 502 with the reason', async t => {
  const blob = randomBytes(3 * PIECE)
  const { entries, log } = spyLog()
  const { base } = await setup(t, { pieceSize: PIECE, exchange: failingAfter(blob, 0), log })
  const r = await get(`${base}/v2/team/app/blobs/${sha(blob)}`)
  t.equal(r.status, 502, 'an error status, not a 200 that ends early')
  t.ok(r.complete, 'the error body arrived whole')
  t.match(JSON.parse(r.body), { errors: [{ code: 'UNAVAILABLE', message: /every holder went away/ }] })
  t.ok(entries.some(e => e.level === 'warn' && /every holder went away/.test(String(e.obj.err))), 'and the agent logged it')
})
