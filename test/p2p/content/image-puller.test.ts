// Image pulls against a real registry (Debian's docker-registry) behind a
// counting proxy, with real libp2p nodes sharing pieces.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createLibp2p, type Libp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { EPHEMERAL_LISTEN, transportModules, transportOf } from '../../../quic/transports.js'
import { BlobStore } from '../../../p2p/content/blob-store.js'
import { sha256Digest } from '../../../p2p/content/digest.js'
import { ImagePuller } from '../../../p2p/content/image-puller.js'
import { PieceExchange } from '../../../p2p/content/piece-exchange.js'
import { RegistryClient } from '../../../p2p/content/registry-client.js'
import { buildImage, pushImage, startCountingProxy, startRegistry, type BuiltImage, type CountingProxy } from '../../helpers/registry.js'

const here = dirname(fileURLToPath(import.meta.url))
const PIECE = 64 * 1024

interface Node { libp2p: Libp2p, store: BlobStore, ex: PieceExchange, puller: ImagePuller, id: string, dir: string }
type Teardown = { teardown: (fn: () => Promise<void>) => void }

async function mkNode (t: Teardown, peers: () => string[]): Promise<Node> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-img-'))
  const libp2p = await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
  const store = await BlobStore.open({ root: dir, pieceSize: PIECE })
  const ex = new PieceExchange({ libp2p, store, pieceSize: PIECE, picker: { queryIntervalMs: 50, startDelayMs: 2000 } })
  await ex.start()
  const id = libp2p.peerId.toString()
  const puller = new ImagePuller({ store, exchange: ex, registry: new RegistryClient({ dockerConfigPath: false }), candidates: () => peers().filter(p => p !== id) })
  t.teardown(async () => { await ex.stop(); await libp2p.stop(); await store.close(); await rm(dir, { recursive: true, force: true }) })
  return { libp2p, store, ex, puller, id, dir }
}

async function mesh (nodes: Node[]): Promise<void> {
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      await nodes[i]!.libp2p.dial(nodes[j]!.libp2p.getMultiaddrs().find(m => transportOf(m) === 'tcp')!)
    }
  }
}

let registry: Awaited<ReturnType<typeof startRegistry>>
let proxy: CountingProxy
let img: BuiltImage

t.before(async () => {
  registry = await startRegistry()
  proxy = await startCountingProxy(registry.url)
  img = await buildImage({ extraLayerSizes: [3 * 1024 * 1024, 700_000] })
  await pushImage(registry.url, 'bolt/app', 'v1', img)
})
t.teardown(async () => { await proxy.stop(); await registry.stop() })

t.test('pull from the registry, then a second node pulls with zero blob bytes from the registry', async t => {
  const nodes: Node[] = []
  const ids = (): string[] => nodes.map(n => n.id)
  nodes.push(await mkNode(t, ids), await mkNode(t, ids))
  await mesh(nodes)
  const [a, b] = nodes as [Node, Node]
  proxy.reset()
  const ref = `${proxy.host}/bolt/app:v1`
  const events: number[] = []
  const first = await a.puller.pull(ref, { onProgress: p => events.push(p.doneBytes) })
  t.equal(first.digest, img.manifestDigest)
  t.equal(first.size, img.blobBytes)
  t.equal(first.bytesFromRegistry, img.blobBytes)
  t.equal(proxy.blobBytes(), img.blobBytes, 'registry served the blobs once')
  t.ok(events.length > 2 && events[events.length - 1] === img.blobBytes, 'progress reached the total')
  for (const l of img.layers) t.same(sha256Digest(await a.store.readAll(l.digest)), l.digest, 'layer verified')

  proxy.reset()
  const second = await b.puller.pull(ref)
  t.equal(second.bytesFromRegistry, 0)
  t.equal(second.bytesFromPeers, img.blobBytes)
  t.equal(proxy.blobBytes(), 0, 'zero blob bytes from the registry for the second node')
  t.equal(proxy.requests().blobs, 0)
  t.same((await b.puller.images()).map(i => [i.ref, i.digest, i.size]), [[ref, img.manifestDigest, img.blobBytes]])
  const origin = async (n: Node): Promise<unknown> => (await n.puller.images()).map(i => [i.bytesFromPeers, i.bytesFromRegistry, i.bytesLocal])
  t.same(await origin(a), [[0, img.blobBytes, 0]], 'the first node records its bytes as from the registry')
  t.same(await origin(b), [[img.blobBytes, 0, 0]], 'the second as from peers')
  const again = await b.puller.pull(ref)
  t.equal(again.bytesLocal, img.blobBytes, 'a pull again of the same digest fetches nothing')
  t.same(await origin(b), [[img.blobBytes, 0, 0]], 'and keeps where the bytes came from')
  const reopened = new ImagePuller({ store: b.store, registry: new RegistryClient({ dockerConfigPath: false }) })
  t.same((await reopened.images()).map(i => i.bytesFromPeers), [img.blobBytes], 'kept in index.json: a restarted agent reads it')

  // The store root is an OCI layout; an exported layout has the image alone.
  const index = JSON.parse(await readFile(join(b.dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string, annotations: Record<string, string> }> }
  t.equal(index.manifests[0]?.annotations['org.opencontainers.image.ref.name'], ref)
  const out = await mkdtemp(join(tmpdir(), 'bolt-export-'))
  t.teardown(async () => await rm(out, { recursive: true, force: true }))
  await b.puller.exportImageLayout(ref, out)
  t.same((await readdir(join(out, 'blobs', 'sha256'))).sort(), [img.manifestDigest, img.configDigest, ...img.layers.map(l => l.digest)].map(d => d.slice(7)).sort())
  const inspect = await run('skopeo', ['inspect', '--raw', `oci:${out}:${ref}`])
  t.equal(sha256Digest(Buffer.from(inspect)), img.manifestDigest, 'skopeo reads the exported layout')
  t.ok(await b.puller.remove(ref))
  t.same(await b.puller.images(), [])
})

t.test('4 nodes pull a fresh image at once: registry egress <= 1.5x the image', async t => {
  const fresh = await buildImage({ extraLayerSizes: [4 * 1024 * 1024] })
  await pushImage(registry.url, 'bolt/fanout', 'v1', fresh)
  const nodes: Node[] = []
  const ids = (): string[] => nodes.map(n => n.id)
  for (let i = 0; i < 4; i++) nodes.push(await mkNode(t, ids))
  await mesh(nodes)
  proxy.reset()
  const results = await Promise.all(nodes.map(async n => await n.puller.pull(`${proxy.host}/bolt/fanout:v1`)))
  for (const r of results) t.equal(r.digest, fresh.manifestDigest)
  const ratio = proxy.blobBytes() / fresh.blobBytes
  t.ok(ratio <= 1.5, `registry egress ${ratio.toFixed(2)}x the image (${proxy.blobBytes()} bytes)`)
  for (const n of nodes) for (const l of fresh.layers) t.ok(await n.store.has(l.digest))
})

t.test('kill -9 during a pull: no partial blob visible after restart, and the pull resumes', async t => {
  const big = await buildImage({ extraLayerSizes: [2 * 1024 * 1024] })
  await pushImage(registry.url, 'bolt/big', 'v1', big)
  const slow = await startCountingProxy(registry.url, { bytesPerSecond: 2 * 1024 * 1024 })
  t.teardown(slow.stop)
  const dir = await mkdtemp(join(tmpdir(), 'bolt-kill-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  const ref = `${slow.host}/bolt/big:v1`
  const child = spawn(process.execPath, [join(here, 'fixtures', 'image-pull-child.js'), dir, ref], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => { if (b.toString().includes('progress')) resolve() })
    child.on('exit', code => reject(new Error(`child exited early (${code})`)))
  })
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGKILL')
  await exited
  const store = await BlobStore.open({ root: dir, pieceSize: PIECE })
  const partials = await store.listPartials()
  t.equal(partials.length, 1, 'one layer was being pulled')
  const bigLayer = big.layers.find(l => l.digest === partials[0])
  t.ok(bigLayer !== undefined, 'the partial is a layer of the image')
  t.notOk(await store.has(partials[0]!), 'the half-pulled layer is not visible')
  for (const b of await store.list()) t.equal(sha256Digest(await store.readAll(b.digest)), b.digest, 'every visible blob is whole')
  const libp2p = await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
  const ex = new PieceExchange({ libp2p, store, pieceSize: PIECE })
  await ex.start()
  t.teardown(async () => { await ex.stop(); await libp2p.stop(); await store.close() })
  const puller = new ImagePuller({ store, exchange: ex, registry: new RegistryClient({ dockerConfigPath: false }) })
  slow.reset()
  const r = await puller.pull(`${proxy.host}/bolt/big:v1`)
  t.equal(r.digest, big.manifestDigest)
  for (const l of big.layers) t.ok(await store.has(l.digest))
  t.ok(r.bytesFromRegistry <= big.blobBytes - 512 * 1024, `resumed: ${r.bytesFromRegistry} of ${big.blobBytes} bytes fetched again`)
  t.same(await store.listPartials(), [])
})

async function run (cmd: string, args: string[]): Promise<string> {
  return await new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    c.stdout.on('data', (b: Buffer) => { out += b.toString() })
    c.stderr.on('data', (b: Buffer) => { err += b.toString() })
    c.on('exit', code => code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${err}`)))
  })
}
