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
import { digestToCid } from '../../../p2p/content/digest.js'
import { DhtProviderSource, KAD_BUCKET_SIZE } from '../../../p2p/content/providers.js'
import { waitFor } from '../../helpers/harness.js'

const PIECE = 64 * 1024

async function mkNode (t: { teardown: (fn: () => Promise<void>) => void }, opts: { members?: () => number, clientMode?: boolean } = {}): Promise<{ libp2p: Awaited<ReturnType<typeof createLibp2p>>, store: BlobStore, ex: PieceExchange, providers: DhtProviderSource }> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-dht-'))
  const libp2p = await createLibp2p({
    addresses: { listen: EPHEMERAL_LISTEN },
    ...transportModules(),
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({ protocol: '/bolt/kad/1.0.0', clientMode: opts.clientMode ?? false, peerInfoMapper: passthroughMapper, allowQueryWithZeroPeers: true })
    }
  })
  const store = await BlobStore.open({ root: dir, pieceSize: PIECE })
  const providers = new DhtProviderSource(libp2p, { members: opts.members })
  const ex = new PieceExchange({ libp2p, store, pieceSize: PIECE, providers, picker: { queryIntervalMs: 50 } })
  await ex.start()
  t.teardown(async () => { await ex.stop(); await libp2p.stop(); await store.close(); await rm(dir, { recursive: true, force: true }) })
  return { libp2p, store, ex, providers }
}

type Node = Awaited<ReturnType<typeof mkNode>>

/** Provider records `n` keeps for `digest` (kad-dht's own store, as GET_PROVIDERS answers from it). */
async function recordsAt (n: Node, digest: string): Promise<string[]> {
  const dht = (n.libp2p.services as unknown as { dht: { providers: { getProviders: (cid: unknown) => Promise<Array<{ toString: () => string }>> } } }).dht
  return (await dht.providers.getProviders(digestToCid(digest))).map(p => p.toString())
}

/** A, B and C, each connected to the others, their routing tables filled. */
async function three (t: Parameters<typeof mkNode>[0], a: Parameters<typeof mkNode>[1] = {}): Promise<[Node, Node, Node]> {
  const nodes = [await mkNode(t, a), await mkNode(t), await mkNode(t)] as [Node, Node, Node]
  const tcp = (n: Node): ReturnType<Node['libp2p']['getMultiaddrs']>[number] => n.libp2p.getMultiaddrs().find(m => transportOf(m) === 'tcp')!
  await nodes[0].libp2p.dial(tcp(nodes[1]))
  await nodes[2].libp2p.dial(tcp(nodes[1]))
  await nodes[0].libp2p.dial(tcp(nodes[2]))
  // Identify fills each routing table with the others; on a loaded machine that took more than half a second.
  const tableSize = (n: Node): number => (n.libp2p.services as unknown as { dht: { routingTable: { size: number } } }).dht.routingTable.size
  // A DHT client (A, when asked) is in no one's table.
  const others = a.clientMode === true ? 1 : 2
  const filled = await waitFor(async () => tableSize(nodes[0]) >= 2 && tableSize(nodes[1]) >= others && tableSize(nodes[2]) >= others, 20_000, 50)
  if (filled < 0) throw new Error(`routing tables not filled: ${nodes.map(tableSize).join(', ')}`)
  return nodes
}

t.test('a blob put on A is found through the DHT and pulled by C', async t => {
  const [a, , c] = await three(t)
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

async function lookup (n: Node, digest: string): Promise<string[]> {
  const found: string[] = []
  for await (const p of n.providers.findProviders(digest, { signal: AbortSignal.timeout(10_000) })) found.push(p)
  return found
}

t.test('in a cluster of at most K members a record stays with its provider, and lookups still find it until it is withdrawn', async t => {
  const [a, b, c] = await three(t, { members: () => 3 })
  // A lookup gets a record only with the provider's addresses: wait until A's own are in its peer store.
  const deadline = Date.now() + 10_000
  while ((await a.libp2p.peerStore.get(a.libp2p.peerId)).addresses.length === 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 100))
  const d = sha256Digest(randomBytes(64))
  await a.providers.provide(d)
  const self = a.libp2p.peerId.toString()
  t.same(await recordsAt(a, d), [self], 'A keeps its own record')
  t.same(await recordsAt(b, d), [], 'nothing was sent to B')
  t.same(await recordsAt(c, d), [], 'nothing was sent to C')
  t.same(await lookup(c, d), [self], "C's lookup asks A and finds it")
  await a.providers.withdraw(d)
  t.same(await recordsAt(a, d), [], 'withdrawn')
  t.same(await lookup(c, d), [], 'a lookup finds no one after the withdrawal')
})

t.test('beyond K members, or from a DHT client, a provide sends the record to the members', async t => {
  for (const opts of [{ members: () => KAD_BUCKET_SIZE + 1 }, { members: () => 3, clientMode: true }, {}]) {
    const [a, b, c] = await three(t, opts)
    const d = sha256Digest(randomBytes(64))
    await a.providers.provide(d)
    const self = a.libp2p.peerId.toString()
    const label = JSON.stringify({ members: opts.members?.(), clientMode: (opts as { clientMode?: boolean }).clientMode })
    // provide() returns once ADD_PROVIDER is sent; B and C store it as they read it.
    await waitFor(async () => (await recordsAt(b, d)).length > 0 && (await recordsAt(c, d)).length > 0, 10_000, 50)
    t.same(await recordsAt(b, d), [self], `B holds A's record (${label})`)
    t.same(await recordsAt(c, d), [self], `C holds A's record (${label})`)
  }
})
