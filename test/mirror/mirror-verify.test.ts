// The mirror's own guarantee, against an exchange that lands bad pieces in
// the partial file (a lying partial holder no piece hash can catch): the
// client never completes a response whose bytes fail the blob's digest.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BlobStore } from '../../p2p/content/blob-store.js'
import { DigestMismatchError } from '../../p2p/content/errors.js'
import type { PieceExchange, PullOptions, PullStats } from '../../p2p/content/piece-exchange.js'
import { fakeExchange, mirrorOverStore } from '../helpers/fake-exchange.js'
import { hashPiece, pieceCount, pieceRange } from '../../p2p/content/pieces.js'
import { RegistryClient } from '../../p2p/content/registry-client.js'
import { MirrorServer } from '../../agent/mirror/mirror-server.js'

const PIECE = 64 * 1024

/** GETs `url`; resolves with the status and the body if it arrived whole, or `aborted`. */
let received = 0
async function get (url: string): Promise<{ status: number, body: Buffer } | 'aborted'> {
  received = 0
  return await new Promise(resolve => {
    const req = request(url, res => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => { parts.push(c); received += c.length })
      res.on('end', () => { resolve(res.complete ? { status: res.statusCode ?? 0, body: Buffer.concat(parts) } : 'aborted') })
      res.on('error', () => resolve('aborted'))
      res.on('aborted', () => resolve('aborted'))
    })
    req.on('error', () => resolve('aborted'))
    req.end()
  })
}

/** An exchange that writes `bad` bytes as pieces, then either fails or rewrites them with `good` and completes. */
function lyingExchange (store: BlobStore, bad: Uint8Array, good: Uint8Array, mode: 'fail' | 'repair'): PieceExchange {
  return fakeExchange(PIECE, async (digest: string, opts: PullOptions): Promise<PullStats> => {
    const partial = await store.openPartial(digest, opts.size, PIECE)
    const n = pieceCount(opts.size, PIECE)
    for (let i = 0; i < n; i++) {
      const { start, length } = pieceRange(opts.size, PIECE, i)
      const piece = bad.subarray(start, start + length)
      await partial.writePiece(i, piece, hashPiece(piece))
      await new Promise(resolve => setTimeout(resolve, 2))
    }
    if (mode === 'fail') throw new DigestMismatchError('assembled blob does not hash to its digest')
    await partial.complete().catch(() => {})
    for (let i = 0; i < n; i++) {
      const { start, length } = pieceRange(opts.size, PIECE, i)
      const piece = good.subarray(start, start + length)
      await partial.writePiece(i, piece, hashPiece(piece))
    }
    await partial.complete()
    return { bytesFromPeers: opts.size, bytesFromRegistry: 0, bannedPeers: [] }
  })
}

for (const mode of ['fail', 'repair'] as const) {
  t.test(`bad pieces in the partial (${mode}): the response is aborted, never completed with bad bytes`, async t => {
    const good = randomBytes(10 * PIECE + 123)
    const bad = Buffer.from(good)
    bad[3 * PIECE + 5] = (bad[3 * PIECE + 5] ?? 0) ^ 0xff
    const { mirror, digest } = await mirrorOverStore(t, PIECE, good, store => lyingExchange(store, bad, good, mode))
    const r = await get(`${mirror.url}/v2/x/blobs/${digest}`)
    if (r === 'aborted') t.pass('aborted')
    // Streamed while pieces arrived: everything but the last piece went out before the pull ended.
    if (r === 'aborted') t.equal(received, 10 * PIECE, 'the pieces before the last were streamed')
    else t.not(r.status, 200, 'no successful response with bad bytes')
    t.equal(mirror.stats.aborted, 1)
    if (mode === 'repair') {
      // The exchange repaired the blob: the next request is served whole from the store.
      const again = await get(`${mirror.url}/v2/x/blobs/${digest}`)
      t.not(again, 'aborted')
      if (again !== 'aborted') t.ok(again.body.equals(good), 'a retry gets the right bytes')
    }
  })
}

t.test('a non-loopback bind is refused unless allowed', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-mirror-bind-'))
  const store = await BlobStore.open({ root: dir })
  t.teardown(async () => { await store.close(); await rm(dir, { recursive: true, force: true }) })
  const mk = (allowRemote: boolean): MirrorServer => new MirrorServer({ store, registry: new RegistryClient({ dockerConfigPath: false }), exchange: lyingExchange(store, new Uint8Array(0), new Uint8Array(0), 'fail'), candidates: () => [], listen: '0.0.0.0:0', upstream: 'registry-1.docker.io', serveStaleTags: true, allowRemote })
  await t.rejects(mk(false).start(), { name: 'MirrorBindRefusedError' })
  const open = mk(true)
  t.match(await open.start(), /^http:\/\/0\.0\.0\.0:\d+$/)
  await open.stop()
})
