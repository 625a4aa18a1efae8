// Attacks on the registry mirror over real HTTP, with the mirror's own
// registry client as the agent builds it from config: a fake upstream and
// an "internal" server record every request they get. `ns=` with a path,
// a query, userinfo or a private address; a redirect to loopback; a foreign
// Host; the node's credentials for a repository the config does not name;
// a blob over the disk quota.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLibp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { EPHEMERAL_LISTEN, transportModules } from '../../quic/transports.js'
import { BlobStore } from '../../p2p/content/blob-store.js'
import { PieceExchange } from '../../p2p/content/piece-exchange.js'
import { MirrorServer } from '../../agent/mirror/mirror-server.js'
import { mirrorChecks, mirrorRegistryClient } from '../../agent/mirror/agent-mirror.js'
import { parseConfig } from '../../agent/config.js'

interface Tap { teardown: (fn: () => Promise<void>) => void }

interface Seen { method: string, url: string, authorization: string | undefined }
interface Recording { host: string, port: number, seen: Seen[] }

/** An HTTP server on 127.0.0.1 that records every request before `handle` answers it. */
async function recording (t: Tap, handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<Recording> {
  const seen: Seen[] = []
  const server: Server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization })
    handle(req, res)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { server.closeAllConnections(); await new Promise<void>(resolve => server.close(() => resolve())) })
  const port = (server.address() as { port: number }).port
  return { host: `127.0.0.1:${port}`, port, seen }
}

function json (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const b = Buffer.from(JSON.stringify(body))
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': b.length, ...headers })
  res.end(b)
}

/** Serves `blob` whole or by a single Range, as registries and CDNs do. */
function sendBlob (req: IncomingMessage, res: ServerResponse, blob: Uint8Array): void {
  const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '')
  if (m === null) {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.length })
    res.end(req.method === 'HEAD' ? undefined : blob)
    return
  }
  const start = Number(m[1])
  const end = Math.min(Number(m[2]), blob.length - 1)
  res.writeHead(206, { 'content-type': 'application/octet-stream', 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${blob.length}` })
  res.end(blob.subarray(start, end + 1))
}

const MANIFEST = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: 'sha256:' + 'c'.repeat(64), size: 2 }, layers: [] }))

function digestOf (b: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex')
}

/** A mirror on one content node (no peers), built from `[mirror]` TOML as the agent builds it. */
async function mkMirror (t: Tap, mirrorToml: string, opts: { dockerConfigPath?: string | false } = {}): Promise<{ mirror: MirrorServer, store: BlobStore }> {
  const config = parseConfig(`[mirror]\nlisten = "127.0.0.1:0"\n${mirrorToml}`, 'test')
  const dir = await mkdtemp(join(tmpdir(), 'bolt-mirror-guard-'))
  const libp2p = await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
  const store = await BlobStore.open({ root: dir, pieceSize: 64 * 1024 })
  const ex = new PieceExchange({ libp2p, store, pieceSize: 64 * 1024, picker: { queryIntervalMs: 50, startDelayMs: 50, registryDeadlineMs: 100, requestTimeoutMs: 5000, stallTimeoutMs: 5000 } })
  await ex.start()
  const registry = mirrorRegistryClient(config.mirror, [], { dockerConfigPath: opts.dockerConfigPath ?? false })
  const mirror = new MirrorServer({
    store,
    registry,
    exchange: ex,
    candidates: () => [],
    listen: config.mirror.listen,
    upstream: config.mirror.upstream,
    serveStaleTags: false,
    ...mirrorChecks(config.mirror)
  })
  await mirror.start()
  t.teardown(async () => {
    await mirror.stop()
    await ex.stop()
    await libp2p.stop()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })
  return { mirror, store }
}

/** A GET with a chosen Host header (fetch does not let one set it). */
async function getWithHost (url: string, host: string): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = request(url, { headers: { host } }, res => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
    req.on('error', reject)
    req.end()
  })
}

/** A fake upstream that answers every manifest and records what it got. */
async function fakeUpstream (t: Tap): Promise<Recording> {
  return await recording(t, (req, res) => {
    if (req.url === '/v2/' || req.url === '/v2') { json(res, 200, {}); return }
    if (/\/manifests\//.test(req.url ?? '')) {
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': MANIFEST.length, 'docker-content-digest': digestOf(MANIFEST) })
      res.end(req.method === 'HEAD' ? undefined : MANIFEST)
      return
    }
    json(res, 404, { errors: [{ code: 'NOT_FOUND' }] })
  })
}

t.test('ns= is a registry host[:port] from the allow-list, never a path, query, userinfo or private address', async t => {
  const up = await fakeUpstream(t)
  // The fake upstream is allowed on loopback, so only the ns checks stand between a request and it.
  const { mirror } = await mkMirror(t, `upstream = "${up.host}"\nregistries = ["${up.host}"]\nallow_private_hosts = ["${up.host}"]\n`)
  const attacks = [
    `${up.host}/admin/delete?x=`,
    `${up.host}/admin`,
    `${up.host}?x=1`,
    `${up.host}#frag`,
    `user:pw@${up.host}`,
    `http://${up.host}`,
    `${up.host}:80`,
    '127.0.0.1',
    `127.0.0.1:${up.port + 1}`,
    '10.0.0.5:5000',
    '169.254.169.254',
    '[::1]:5000',
    '[::ffff:127.0.0.1]:5000',
    'localhost:5000',
    'evil.example.com',
    `${up.host} `,
    ''.padEnd(300, 'a')
  ]
  for (const ns of attacks) {
    const res = await fetch(`${mirror.url}/v2/team/app/manifests/1.0?ns=${encodeURIComponent(ns)}`)
    t.equal(res.status, 400, `ns=${JSON.stringify(ns.slice(0, 60))} is refused with 400 (${res.status})`)
    await res.body?.cancel()
  }
  t.same(up.seen, [], 'the upstream received nothing')

  // The same mirror does reach the upstream when ns names it properly.
  const ok = await fetch(`${mirror.url}/v2/team/app/manifests/1.0?ns=${up.host}`)
  t.equal(ok.status, 200, 'ns= naming the allowed registry works')
  await ok.body?.cancel()
  t.ok(up.seen.some(s => s.url === '/v2/team/app/manifests/1.0'), 'and reaches the upstream at the repository path only')
})

t.test('without allow_private_hosts the mirror fetches from no loopback upstream', async t => {
  const up = await fakeUpstream(t)
  const { mirror } = await mkMirror(t, `upstream = "${up.host}"\n`)
  const ns = await fetch(`${mirror.url}/v2/team/app/manifests/1.0?ns=${up.host}`)
  t.equal(ns.status, 400, 'ns= naming a loopback address: 400')
  await ns.body?.cancel()
  const dflt = await fetch(`${mirror.url}/v2/team/app/manifests/1.0`)
  t.equal(dflt.status, 502, 'the configured upstream on loopback: refused by the guard')
  t.match(await dflt.text(), /allow_private_hosts/, 'the error says which key allows it')
  t.same(up.seen, [], 'the upstream received nothing')
})

t.test('a redirect to 127.0.0.1 is not followed; one to an allowed CDN is', async t => {
  const internal = await recording(t, (_req, res) => { json(res, 200, { secret: true }) })
  const blob = randomBytes(200 * 1024 + 7)
  const d = digestOf(blob)
  const cdn = await recording(t, (req, res) => { sendBlob(req, res, blob) })
  const up = await recording(t, (req, res) => {
    const url = req.url ?? ''
    if (url.endsWith('/manifests/to-loopback')) { res.writeHead(307, { location: `http://127.0.0.1:${internal.port}/admin?x=1` }); res.end(); return }
    if (url.endsWith('/manifests/to-localhost')) { res.writeHead(302, { location: `http://localhost:${internal.port}/admin` }); res.end(); return }
    if (url.endsWith('/manifests/to-file')) { res.writeHead(302, { location: 'file:///etc/shadow' }); res.end(); return }
    if (url.endsWith(`/blobs/${d}`)) { res.writeHead(307, { location: `http://127.0.0.1:${cdn.port}/cdn/${d.slice(7)}?sig=x` }); res.end(); return }
    json(res, 404, {})
  })
  const { mirror } = await mkMirror(t, `upstream = "${up.host}"\nallow_private_hosts = ["${up.host}", "127.0.0.1:${cdn.port}"]\n`)
  for (const tag of ['to-loopback', 'to-localhost', 'to-file']) {
    const res = await fetch(`${mirror.url}/v2/team/app/manifests/${tag}`)
    t.equal(res.status, 502, `${tag}: the mirror refuses the redirect`)
    await res.body?.cancel()
  }
  t.ok(up.seen.length >= 3, 'the upstream was asked')
  t.same(internal.seen, [], 'the internal server received nothing')

  const res = await fetch(`${mirror.url}/v2/team/app/blobs/${d}`)
  t.equal(res.status, 200, 'a blob redirect to an allowed CDN is followed')
  t.ok(Buffer.from(await res.arrayBuffer()).equals(blob), 'and its bytes served')
  t.ok(cdn.seen.length > 0, 'the CDN served them')
})

t.test('a foreign Host is refused with 421 before anything is fetched', async t => {
  const up = await fakeUpstream(t)
  const { mirror } = await mkMirror(t, `upstream = "${up.host}"\nallow_private_hosts = ["${up.host}"]\nallowed_hosts = ["mirror.internal"]\n`)
  const port = new URL(mirror.url).port
  for (const host of [`attacker.example:${port}`, 'attacker.example', `10.1.2.3:${port}`, 'Attacker.Example.']) {
    const r = await getWithHost(`${mirror.url}/v2/team/app/manifests/1.0`, host)
    t.equal(r.status, 421, `Host ${JSON.stringify(host)}: 421`)
  }
  t.same(up.seen, [], 'the upstream received nothing')
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `mirror.internal:${port}`]) {
    const r = await getWithHost(`${mirror.url}/v2/`, host)
    t.equal(r.status, 200, `Host ${host}: served`)
  }
})

t.test('the node\'s credentials go only to repositories the config names', async t => {
  const up = await recording(t, (req, res) => {
    if (req.headers.authorization !== 'Basic ' + Buffer.from('alice:s3cret').toString('base64')) {
      json(res, 401, { errors: [{ code: 'UNAUTHORIZED' }] }, { 'www-authenticate': 'Basic realm="registry"' })
      return
    }
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': MANIFEST.length })
    res.end(MANIFEST)
  })
  const dir = await mkdtemp(join(tmpdir(), 'bolt-mirror-docker-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const dockerConfig = join(dir, 'config.json')
  await writeFile(dockerConfig, JSON.stringify({ auths: { [up.host]: { auth: Buffer.from('alice:s3cret').toString('base64') } } }))
  const { mirror } = await mkMirror(t, `upstream = "${up.host}"\nallow_private_hosts = ["${up.host}"]\ncredential_repositories = ["${up.host}/private/*"]\n`, { dockerConfigPath: dockerConfig })

  const other = await fetch(`${mirror.url}/v2/team/app/manifests/1.0`)
  t.equal(other.status, 403, 'a repository the config does not name is fetched anonymously (and refused)')
  await other.body?.cancel()
  t.ok(up.seen.length > 0 && up.seen.every(s => s.authorization === undefined), 'no credential was sent for it')

  const mine = await fetch(`${mirror.url}/v2/private/app/manifests/1.0`)
  t.equal(mine.status, 200, 'a named repository is fetched with the node\'s credentials')
  await mine.body?.cancel()
  t.ok(up.seen.some(s => s.url === '/v2/private/app/manifests/1.0' && s.authorization !== undefined), 'the credential went to the named repository')
})

t.test('the disk quota: least recently used unpinned blobs are evicted; a blob that cannot fit is a 507', async t => {
  const blobs = new Map<string, Uint8Array>()
  const add = (n: number): string => { const b = randomBytes(n); const d = digestOf(b); blobs.set(d, b); return d }
  const b1 = add(300 * 1024)
  const b2 = add(300 * 1024)
  const b4 = add(450 * 1024)
  const big = add(900 * 1024)
  const up = await recording(t, (req, res) => {
    const m = /\/blobs\/(sha256:[a-f0-9]{64})$/.exec(req.url ?? '')
    const b = m === null ? undefined : blobs.get(m[1] as string)
    if (b === undefined) { json(res, 404, {}); return }
    sendBlob(req, res, b)
  })
  const { mirror, store } = await mkMirror(t, `upstream = "${up.host}"\nallow_private_hosts = ["${up.host}"]\ndisk_quota_bytes = ${700 * 1024}\n`)
  const get = async (d: string): Promise<Response> => await fetch(`${mirror.url}/v2/team/app/blobs/${d}`)
  for (const d of [b1, b2]) {
    const r = await get(d)
    t.equal(r.status, 200)
    t.ok(Buffer.from(await r.arrayBuffer()).equals(blobs.get(d)!), 'served whole')
  }
  // b2 now belongs to a capsule image: the mirror's quota neither counts nor evicts it.
  await store.pin('image:registry.example/team/app:1', [b2])
  const r4 = await get(b4)
  t.equal(r4.status, 200, 'a blob that fits after eviction is served')
  await r4.arrayBuffer()
  t.notOk(store.hasSync(b1), 'the least recently used unpinned blob was evicted')
  t.ok(store.hasSync(b2), 'the pinned blob stays')
  t.ok(store.hasSync(b4))
  const rb = await get(big)
  t.equal(rb.status, 507, 'a blob larger than the quota is refused')
  t.match(await rb.text(), /disk_quota_bytes/, 'the error names the key to raise')
  t.notOk(store.hasSync(big))
})
