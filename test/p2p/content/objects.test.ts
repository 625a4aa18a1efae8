// Objects over real libp2p nodes: put with K replicas, the origin dies, a
// third node gets the object from the replicas, every chunk verified.
import t from 'tap'
import { randomBytes, createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLibp2p, type Libp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { EPHEMERAL_LISTEN, transportModules, transportOf } from '../../../quic/transports.js'
import { BlobStore } from '../../../p2p/content/blob-store.js'
import { PieceExchange } from '../../../p2p/content/piece-exchange.js'
import { ObjectStore } from '../../../p2p/content/objects.js'
import { PeerChannel } from '../../../p2p/content/peer-channel.js'
import { PieceBuffers } from '../../../p2p/content/piece-buffers.js'
import { PIECES_PROTOCOL } from '../../../p2p/content/piece-messages.js'

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

t.test('a staged object is invisible until committed, and a discarded one leaves nothing', async t => {
  const n = await mkNode(t, () => [])
  const data = randomBytes(1_000_000)
  async function * pieces (): AsyncIterable<Uint8Array> { for (let o = 0; o < data.length; o += 50_000) yield data.subarray(o, o + 50_000) }
  const blobFiles = async (): Promise<string[]> => await readdir(join(n.dir, 'store', 'blobs', 'sha256'))
  const tmpFiles = async (): Promise<string[]> => await readdir(join(n.dir, 'store', 'tmp'))
  const before = await blobFiles()

  const dropped = await n.objects.stageObject(pieces())
  t.ok(dropped.chunks.length > 1, `${dropped.chunks.length} chunks staged`)
  t.notOk(dropped.chunks.some(c => n.store.hasSync(c.digest)), 'no staged chunk is visible')
  t.same(await blobFiles(), before, 'nothing under blobs/ while staged')
  await n.objects.discardObject(dropped)
  t.same(await tmpFiles(), [], 'discarding deletes every staged file')
  t.same(await blobFiles(), before)

  const staged = await n.objects.stageObject(pieces())
  const put = await n.objects.commitObject(staged, { name: 'x' })
  t.equal(put.size, data.length)
  t.same(await tmpFiles(), [], 'committing leaves no temp file')
  t.equal(n.store.refCount(put.id), 1, 'the manifest is pinned')
  const chunks: Buffer[] = []
  for await (const c of n.objects.readObject(await n.objects.readManifest(put.id))) chunks.push(Buffer.from(c))
  t.ok(Buffer.concat(chunks).equals(data), 'the committed object reads back byte-exact')
  // The same bytes again: every chunk is already there (dedup), nothing new staged.
  const again = await n.objects.stageObject(pieces())
  t.ok(again.chunks.every(c => c.tmp === undefined), 'chunks already stored are not written again')
  t.equal((await n.objects.commitObject(again, { name: 'x' })).id, put.id)
})

t.test('a stream that fails midway leaves no staged file', async t => {
  const n = await mkNode(t, () => [])
  async function * failing (): AsyncIterable<Uint8Array> { yield randomBytes(600_000); throw new Error('client went away') }
  await t.rejects(n.objects.stageObject(failing()), /client went away/)
  t.same(await readdir(join(n.dir, 'store', 'tmp')), [])
})

// A small object's replicas get its bytes with the request: the peers store
// them without pulling anything back from the origin. And a member that sends
// bytes under a digest they do not hash to is refused, with nothing kept.
t.test('small replicas travel with the request, checked against their digests', async t => {
  const nodes: Node[] = []
  const ids = (): string[] => nodes.map(n => n.id)
  for (let i = 0; i < 3; i++) nodes.push(await mkNode(t, ids))
  for (let i = 0; i < 3; i++) for (let j = i + 1; j < 3; j++) await nodes[i]!.libp2p.dial(nodes[j]!.libp2p.getMultiaddrs().find(m => transportOf(m) === 'tcp')!)
  const [a, b, c] = nodes as [Node, Node, Node]
  const file = join(a.dir, 'small.bin')
  const data = randomBytes(3000)
  await writeFile(file, data)
  const put = await a.objects.putObject(file, { replicas: 2 })
  t.same(put.replicas.sort(), [b.id, c.id].sort(), 'both peers took a replica')
  for (const n of [b, c]) {
    t.ok(n.store.hasSync(put.id), 'a replica holds the manifest')
    t.equal(n.store.refCount(put.id), 1, 'and pins it')
  }
  t.equal(a.ex.counters.bytesServed, 0, 'the origin served no piece: the bytes came with the request')

  // A lying member: bytes that do not hash to the digest they are sent under.
  const stream = await a.libp2p.dialProtocol(b.libp2p.peerId, PIECES_PROTOCOL)
  const ch = new PeerChannel(b.id, stream, 10_000, new PieceBuffers())
  t.teardown(() => { ch.close() })
  const claimed = `sha256:${createHash('sha256').update('other bytes').digest('hex')}`
  const { res } = await ch.request({ t: 'replicate?', owner: 'object:lie', blobs: [{ digest: claimed, size: 5, data: Buffer.from('lies!') }] })
  t.match(res, { t: 'replicated', ok: false, error: /hash to/ }, 'refused, with the reason')
  t.notOk(b.store.hasSync(claimed), 'nothing stored under the claimed digest')
  const tmpLeft = await readdir(join(b.dir, 'store', 'tmp')).catch(() => [])
  t.same(tmpLeft, [], 'and no staged file left behind')
})
