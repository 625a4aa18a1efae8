// Stand-ins for mirror tests. fakeExchange: the piece exchange, whose `pull`
// is the test's own (it writes pieces into the store's partial file as it
// likes); no recent pieces are kept, so the mirror reads every piece it
// sends from disk. mirrorOverStore: a mirror on a fresh store in a temp dir,
// told the size of one blob, stopped and removed at the test's end.
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { MirrorServer } from '../../agent/mirror/mirror-server.js'
import { BlobStore } from '../../p2p/content/blob-store.js'
import type { PieceExchange, PullOptions, PullStats } from '../../p2p/content/piece-exchange.js'
import { RecentPieces } from '../../p2p/content/recent-pieces.js'
import { PieceBuffers } from '../../p2p/content/piece-buffers.js'
import { RegistryClient } from '../../p2p/content/registry-client.js'

export function fakeExchange (pieceSize: number, pull: (digest: string, opts: PullOptions) => Promise<PullStats>): PieceExchange {
  const fake = { pieceSize, recent: new RecentPieces(0), buffers: new PieceBuffers(), probeSize: async () => undefined, pull }
  return fake as unknown as PieceExchange
}

/** A started mirror whose exchange is `exchange(store)`; `blob` is the blob whose size it knows (and its digest is returned). */
export async function mirrorOverStore (t: Test, pieceSize: number, blob: Uint8Array, exchange: (store: BlobStore) => PieceExchange): Promise<{ mirror: MirrorServer, store: BlobStore, digest: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-mirror-test-'))
  const store = await BlobStore.open({ root: dir, pieceSize })
  const digest = 'sha256:' + createHash('sha256').update(blob).digest('hex')
  const mirror = new MirrorServer({ store, registry: new RegistryClient({ dockerConfigPath: false }), exchange: exchange(store), candidates: () => [], listen: '127.0.0.1:0', upstream: '127.0.0.1:9', serveStaleTags: true })
  // The size comes from a manifest served before; here it is told directly.
  ;(mirror as unknown as { knowSize: (d: string, n: number) => void }).knowSize(digest, blob.length)
  await mirror.start()
  t.teardown(async () => {
    await mirror.stop()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })
  return { mirror, store, digest }
}
