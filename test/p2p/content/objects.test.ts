// Objects over real libp2p nodes: put with K replicas, the origin dies, a
// third node gets the object from the replicas, every chunk verified.
import t from 'tap'
import { randomBytes, createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLibp2p, type Libp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { EPHEMERAL_LISTEN, transportModules, transportOf } from '../../../quic/transports.js'
import { BlobStore } from '../../../p2p/content/blob-store.js'
import { PieceExchange } from '../../../p2p/content/piece-exchange.js'
import { ObjectStore } from '../../../p2p/content/objects.js'

const PIECE = 64 * 1024
const CDC = { minSize: 16 * 1024, avgSize: 64 * 1024, maxSize: 256 * 1024 }

interface Node { libp2p: Libp2p, store: BlobStore, ex: PieceExchange, objects: ObjectStore, id: string, dir: string }

async function mkNode (t: { teardown: (fn: () => Promise<void>) => void }, peers: () => string[]): Promise<Node> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-obj-'))
  const libp2p = await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
  const store = await BlobStore.open({ root: join(dir, 'store'), pieceSize: PIECE })
  const ex = new PieceExchange({ libp2p, store, pieceSize: PIECE, picker: { queryIntervalMs: 50, stallTimeoutMs: 3000, requestTimeoutMs: 3000 } })
  await ex.start()
  const id = libp2p.peerId.toString()
  const objects = new ObjectStore({ store, exchange: ex, cdc: CDC, candidates: () => peers().filter(p => p !== id) })
  t.teardown(async () => { await ex.stop(); await libp2p.stop(); await store.close(); await rm(dir, { recursive: true, force: true }) })
  return { libp2p, store, ex, objects, id, dir }
}

t.test('put with 2 replicas, the origin dies, a third node gets the object verified', async t => {
  const nodes: Node[] = []
  const ids = (): string[] => nodes.map(n => n.id)
  for (let i = 0; i < 4; i++) nodes.push(await mkNode(t, ids))
  for (let i = 0; i < 4; i++) for (let j = i + 1; j < 4; j++) await nodes[i]!.libp2p.dial(nodes[j]!.libp2p.getMultiaddrs().find(m => transportOf(m) === 'tcp')!)
  const [a, b, c, d] = nodes as [Node, Node, Node, Node]
  // A file made of one region three times: once the chunker has found a cut
  // inside a copy, the later copies cut at the same places and share chunks.
  const part = randomBytes(400_000)
  const data = Buffer.concat([part, part, part])
  const file = join(a.dir, 'input.bin')
  await writeFile(file, data)
  const put = await new ObjectStore({ store: a.store, exchange: a.ex, cdc: CDC, chooseReplicas: (k) => [b.id, d.id].slice(0, k) }).putObject(file, { replicas: 2 })
  t.same(put.replicas.sort(), [b.id, d.id].sort())
  t.same(put.replicaErrors, [])
  t.equal(put.size, data.length)
  const manifest = await a.objects.readManifest(put.id)
  const unique = new Set(manifest.chunks.map(x => x.digest)).size
  t.ok(unique < manifest.chunks.length, `dedup: ${unique} unique of ${manifest.chunks.length} chunks`)
  const again = await a.objects.putObject(file)
  t.equal(again.id, put.id, 'same bytes, same id')
  t.equal(again.dedupedChunks, again.chunks, 'a second put stores no chunk again')
  for (const n of [b, d]) {
    t.ok(await n.store.has(put.id), 'replica holds the manifest')
    t.equal(n.store.refCount(put.id), 1, 'and pins it')
    for (const ch of manifest.chunks) t.ok(n.store.hasSync(ch.digest))
  }

  // The origin dies (its node stops abruptly); gossip reports it dead.
  await a.ex.stop()
  await a.libp2p.stop()
  c.ex.markDead(a.id)
  const dest = join(c.dir, 'out.bin')
  const got = await c.objects.getObject(put.id, dest, { candidates: [a.id, b.id, d.id] })
  t.equal(got.size, data.length)
  const out = await readFile(dest)
  t.equal(createHash('sha256').update(out).digest('hex'), createHash('sha256').update(data).digest('hex'), 'content verified')
  t.ok(got.bytesFromPeers > 0)
})

t.test('an unknown object id fails with ObjectNotFoundError', async t => {
  const nodes: Node[] = []
  nodes.push(await mkNode(t, () => nodes.map(n => n.id)))
  await t.rejects(nodes[0]!.objects.getObject('sha256:' + '0'.repeat(64), join(nodes[0]!.dir, 'x')), { name: 'ObjectNotFoundError' })
})
