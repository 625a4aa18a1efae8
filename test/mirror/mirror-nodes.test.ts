// The mirror on three in-process content nodes over libp2p, a real registry
// (docker-registry) behind a counting proxy, and skopeo as the client:
// pulls after a peer has the image, Range, a corrupt peer, upstream down.
import t from 'tap'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLibp2p, type Libp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { EPHEMERAL_LISTEN, transportModules, transportOf } from '../../quic/transports.js'
import { BlobStore } from '../../p2p/content/blob-store.js'
import { PieceExchange } from '../../p2p/content/piece-exchange.js'
import { RegistryClient } from '../../p2p/content/registry-client.js'
import { ImagePuller } from '../../p2p/content/image-puller.js'
import { MirrorServer } from '../../agent/mirror/mirror-server.js'
import { buildImage, pushImage, startCountingProxy, startRegistry, type BuiltImage } from '../helpers/registry.js'

const PIECE = 64 * 1024

interface MirrorNode { libp2p: Libp2p, store: BlobStore, ex: PieceExchange, registry: RegistryClient, mirror: MirrorServer, id: string, peers: string[] }

async function mkNode (t: Tap, upstream: string, opts: { corrupt?: boolean } = {}): Promise<MirrorNode> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-mirror-'))
  const libp2p = await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
  const store = await BlobStore.open({ root: dir, pieceSize: PIECE })
  const ex = new PieceExchange({
    libp2p,
    store,
    pieceSize: PIECE,
    corruptPieces: opts.corrupt,
    picker: { queryIntervalMs: 50, startDelayMs: 2000, registryDeadlineMs: 2000, requestTimeoutMs: 5000, stallTimeoutMs: 5000 }
  })
  await ex.start()
  const registry = new RegistryClient({ dockerConfigPath: false, backoffMs: 20, retries: 1 })
  const peers: string[] = []
  const mirror = new MirrorServer({ store, registry, exchange: ex, candidates: () => [...peers], listen: '127.0.0.1:0', upstream, serveStaleTags: true, ...(process.env.MIRROR_DEBUG !== undefined ? { log: { info: (o: object, m: string) => console.error(m, o), warn: (o: object, m: string) => console.error(m, o), debug: (o: object, m: string) => console.error(m, o) } } : {}) })
  await mirror.start()
  const node = { libp2p, store, ex, registry, mirror, id: libp2p.peerId.toString(), peers }
  t.teardown(async () => {
    await mirror.stop()
    await ex.stop()
    await libp2p.stop()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })
  return node
}

interface Tap { teardown: (fn: () => Promise<void>) => void }

async function link (nodes: MirrorNode[]): Promise<void> {
  for (const a of nodes) {
    for (const b of nodes) {
      if (a === b) continue
      a.peers.push(b.id)
      const addr = b.libp2p.getMultiaddrs().find(m => transportOf(m) === 'tcp')
      if (addr !== undefined) await a.libp2p.dial(addr)
    }
  }
}

async function skopeo (args: string[]): Promise<{ code: number, out: string }> {
  return await new Promise(resolve => {
    execFile('skopeo', args, { timeout: 60_000, maxBuffer: 8 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? 1), out: stdout + stderr })
    })
  })
}

/** Every blob of `img` is in skopeo's `dir:` output with the right content (an `oci:` layout would hold recompressed layers). */
async function layoutHolds (dir: string, img: BuiltImage): Promise<boolean> {
  for (const d of [img.configDigest, ...img.layers.map(l => l.digest)]) {
    const bytes = await readFile(join(dir, d.slice(7))).catch(() => undefined)
    if (bytes === undefined || 'sha256:' + createHash('sha256').update(bytes).digest('hex') !== d) return false
  }
  return true
}

t.test('mirror on three content nodes', async t => {
  const reg = await startRegistry()
  t.teardown(reg.stop)
  const proxy = await startCountingProxy(reg.url)
  t.teardown(proxy.stop)
  const img = await buildImage({ extraLayerSizes: [1024 * 1024 + 333, 300 * 1024] })
  await pushImage(reg.url, 'test/img', 'v1', img)
  const [a, b, c] = await Promise.all([mkNode(t, proxy.host), mkNode(t, proxy.host), mkNode(t, proxy.host)]) as [MirrorNode, MirrorNode, MirrorNode]
  await link([a, b, c])
  const out = await mkdtemp(join(tmpdir(), 'bolt-mirror-out-'))
  t.teardown(async () => { await rm(out, { recursive: true, force: true }) })

  // A pulls the image (as `bolt-agent pull` would).
  await new ImagePuller({ store: a.store, registry: a.registry, exchange: a.ex, candidates: () => a.peers }).pull(`${proxy.host}/test/img:v1`)
  proxy.reset()

  await t.test('/v2/ answers and errors follow the spec', async t => {
    const base = await fetch(`${b.mirror.url}/v2/`)
    t.equal(base.status, 200)
    t.equal(base.headers.get('docker-distribution-api-version'), 'registry/2.0')
    const missing = await fetch(`${b.mirror.url}/v2/test/img/blobs/sha256:${'0'.repeat(64)}`)
    t.equal(missing.status, 404)
    t.equal(((await missing.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'BLOB_UNKNOWN')
    const unknownTag = await fetch(`${b.mirror.url}/v2/test/img/manifests/nope`)
    t.equal(unknownTag.status, 404)
    t.equal(((await unknownTag.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'MANIFEST_UNKNOWN')
    const put = await fetch(`${b.mirror.url}/v2/test/img/manifests/v1`, { method: 'PUT', body: '{}' })
    t.equal(put.status, 405)
    await put.body?.cancel()
  })

  await t.test('skopeo pulls through B after A: the upstream serves zero blob bytes', async t => {
    proxy.reset()
    const inspect = await skopeo(['inspect', '--tls-verify=false', `docker://${b.mirror.url.slice(7)}/test/img:v1`])
    t.equal(inspect.code, 0, inspect.code === 0 ? 'skopeo exits 0' : inspect.out)
    t.equal((JSON.parse(inspect.out) as { Digest: string }).Digest, img.manifestDigest)
    const head = await fetch(`${b.mirror.url}/v2/test/img/manifests/v1`, { method: 'HEAD' })
    t.equal(head.headers.get('docker-content-digest'), img.manifestDigest)
    t.equal(head.headers.get('x-bolt-tag-source'), 'upstream')
    t.equal(head.headers.get('content-type'), 'application/vnd.oci.image.manifest.v1+json')
    const r = await skopeo(['copy', '--src-tls-verify=false', `docker://${b.mirror.url.slice(7)}/test/img:v1`, `dir:${join(out, 'b')}`])
    t.equal(r.code, 0, r.code === 0 ? 'skopeo exits 0' : r.out)
    t.ok(await layoutHolds(join(out, 'b'), img), 'skopeo wrote every blob with its digest')
    t.equal(proxy.blobBytes(), 0, `no blob byte from the upstream: ${JSON.stringify({ reqs: proxy.requests(), stats: b.mirror.stats })}`)
    t.ok(b.mirror.stats.bytes.peers >= img.blobBytes, `B fetched from peers: ${JSON.stringify(b.mirror.stats)}`)
    t.ok(b.store.hasSync(img.layers[1]!.digest), 'B stored what it served')
    const oci = await skopeo(['copy', '--src-tls-verify=false', `docker://${b.mirror.url.slice(7)}/test/img:v1`, `oci:${join(out, 'b-oci')}:v1`])
    t.equal(oci.code, 0, oci.code === 0 ? 'skopeo exits 0' : oci.out)
    t.equal(proxy.blobBytes(), 0, 'the second pull is local')
    const tags = await fetch(`${b.mirror.url}/v2/test/img/tags/list`)
    t.same(await tags.json(), { name: 'test/img', tags: ['v1'] })
  })

  await t.test('a Range for the middle of a layer returns exactly those bytes (held and not held)', async t => {
    const layer = img.layers[1]!
    for (const node of [b, c]) {
      const res = await fetch(`${node.mirror.url}/v2/test/img/blobs/${layer.digest}`, { headers: { range: 'bytes=100000-700001' } })
      t.equal(res.status, 206)
      t.equal(res.headers.get('content-range'), `bytes 100000-700001/${layer.bytes.length}`)
      t.equal(res.headers.get('content-length'), String(700002 - 100000))
      t.ok(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(layer.bytes.subarray(100000, 700002))))
    }
    const bad = await fetch(`${b.mirror.url}/v2/test/img/blobs/${layer.digest}`, { headers: { range: `bytes=${layer.bytes.length}-` } })
    t.equal(bad.status, 416)
    await bad.body?.cancel()
  })

  await t.test('upstream down: a digest-pinned pull of a cached image works through any node; tags from the cache', async t => {
    proxy.setDown(true)
    t.teardown(() => { proxy.setDown(false) })
    for (const node of [a, b, c]) {
      const dir = join(out, `down-${node.id.slice(-6)}`)
      const r = await skopeo(['copy', '--src-tls-verify=false', `docker://${node.mirror.url.slice(7)}/test/img@${img.manifestDigest}`, `dir:${dir}`])
      t.equal(r.code, 0, r.code === 0 ? 'skopeo exits 0' : r.out)
      t.ok(await layoutHolds(dir, img))
    }
    const tag = await fetch(`${b.mirror.url}/v2/test/img/manifests/v1`, { method: 'HEAD' })
    t.equal(tag.status, 200)
    t.equal(tag.headers.get('x-bolt-tag-source'), 'node', 'no Raft here: the node\'s own last resolution')
    t.equal(tag.headers.get('docker-content-digest'), img.manifestDigest)
    t.ok(b.mirror.stats.staleTags >= 1)
  })
})

t.test('a corrupt peer: the client never completes with bad bytes; a retry succeeds from the upstream', async t => {
  const reg = await startRegistry()
  t.teardown(reg.stop)
  const proxy = await startCountingProxy(reg.url)
  t.teardown(proxy.stop)
  const img = await buildImage({ extraLayerSizes: [1024 * 1024 + 7] })
  await pushImage(reg.url, 'test/bad', 'v1', img)
  const liar = await mkNode(t, proxy.host, { corrupt: true })
  const b = await mkNode(t, proxy.host)
  await link([liar, b])
  await new ImagePuller({ store: liar.store, registry: liar.registry }).pull(`${proxy.host}/test/bad:v1`)
  proxy.reset()
  const out = await mkdtemp(join(tmpdir(), 'bolt-mirror-bad-'))
  t.teardown(async () => { await rm(out, { recursive: true, force: true }) })

  // Raw client first: whatever it gets, a complete body hashes right.
  const layer = img.layers[1]!
  const res = await fetch(`${b.mirror.url}/v2/test/bad/blobs/${layer.digest}`).catch(() => undefined)
  if (res !== undefined) {
    const body = await res.arrayBuffer().then(x => Buffer.from(x), () => undefined)
    if (body !== undefined && res.status === 200) {
      t.equal('sha256:' + createHash('sha256').update(body).digest('hex'), layer.digest, 'a complete body is the right one')
    } else {
      t.pass('the response was aborted')
    }
  }
  let ok = false
  for (let attempt = 0; attempt < 3 && !ok; attempt++) {
    const dir = join(out, `try${attempt}`)
    const r = await skopeo(['copy', '--src-tls-verify=false', `docker://${b.mirror.url.slice(7)}/test/bad:v1`, `dir:${dir}`])
    ok = r.code === 0 && await layoutHolds(dir, img)
  }
  t.ok(ok, 'a retry succeeds')
  t.ok(b.ex.bannedPeers.has(liar.id) || proxy.blobBytes() > 0, 'the lying peer was caught and the upstream used')
  t.ok(proxy.blobBytes() > 0, 'bytes came from the upstream')
  const stored = await b.store.readAll(layer.digest)
  t.equal('sha256:' + createHash('sha256').update(stored).digest('hex'), layer.digest)
})
