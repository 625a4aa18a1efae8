// Provider records in a real kad-dht (cluster-private protocol, as the
// agent's node runs it): a node that holds a blob is found by the CID of the
// digest, and a pull finds its source with no candidate list at all.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLibp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { EPHEMERAL_LISTEN, transportModules, transportOf } from '../../../quic/transports.js'
import { BlobStore } from '../../../p2p/content/blob-store.js'
import { sha256Digest } from '../../../p2p/content/digest.js'
import { PieceExchange } from '../../../p2p/content/piece-exchange.js'
import { DhtProviderSource } from '../../../p2p/content/providers.js'

const PIECE = 64 * 1024

async function mkNode (t: { teardown: (fn: () => Promise<void>) => void }): Promise<{ libp2p: Awaited<ReturnType<typeof createLibp2p>>, store: BlobStore, ex: PieceExchange, providers: DhtProviderSource }> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-dht-'))
  const libp2p = await createLibp2p({
    addresses: { listen: EPHEMERAL_LISTEN },
    ...transportModules(),
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({ protocol: '/bolt/kad/1.0.0', clientMode: false, peerInfoMapper: passthroughMapper, allowQueryWithZeroPeers: true })
    }
  })
  const store = await BlobStore.open({ root: dir, pieceSize: PIECE })
  const providers = new DhtProviderSource(libp2p)
  const ex = new PieceExchange({ libp2p, store, pieceSize: PIECE, providers, picker: { queryIntervalMs: 50 } })
  await ex.start()
  t.teardown(async () => { await ex.stop(); await libp2p.stop(); await store.close(); await rm(dir, { recursive: true, force: true }) })
  return { libp2p, store, ex, providers }
}

t.test('a blob put on A is found through the DHT and pulled by C', async t => {
  const a = await mkNode(t)
  const b = await mkNode(t)
  const c = await mkNode(t)
  const tcp = (n: typeof a): ReturnType<typeof a.libp2p.getMultiaddrs>[number] => n.libp2p.getMultiaddrs().find(m => transportOf(m) === 'tcp')!
  await a.libp2p.dial(tcp(b))
  await c.libp2p.dial(tcp(b))
  await a.libp2p.dial(tcp(c))
  // Let identify run so each routing table holds the others.
  await new Promise(resolve => setTimeout(resolve, 500))
  const data = randomBytes(5 * PIECE)
  const d = sha256Digest(data)
  await a.store.put(data, d)
  await a.providers.provide(d)
  const found: string[] = []
  for await (const p of c.providers.findProviders(d, { signal: AbortSignal.timeout(10_000) })) { found.push(p); break }
  t.same(found, [a.libp2p.peerId.toString()])
  const stats = await c.ex.pull(d, { size: data.length, signal: AbortSignal.timeout(20_000) })
  t.equal(stats.bytesFromPeers, data.length)
  t.same(Buffer.from(await c.store.readAll(d)), data)
})
