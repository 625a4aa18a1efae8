import t from 'tap'
import { createServer } from 'node:http'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RegistryClient, parseChallenge } from '../../../p2p/content/registry-client.js'
import { parseReference, formatReference } from '../../../p2p/content/reference.js'
import { sha256Digest } from '../../../p2p/content/digest.js'
import { buildImage, pushImage, pushIndex, startRegistry } from '../../helpers/registry.js'

t.test('reference parsing follows Docker rules', async t => {
  const cases: Array<[string, string]> = [
    ['busybox', 'docker.io/library/busybox:latest'],
    ['user/app:1.0', 'docker.io/user/app:1.0'],
    ['ghcr.io/org/app', 'ghcr.io/org/app:latest'],
    ['localhost:5000/app:dev', 'localhost:5000/app:dev'],
    ['127.0.0.1:5000/a/b@sha256:' + 'a'.repeat(64), '127.0.0.1:5000/a/b@sha256:' + 'a'.repeat(64)],
    ['index.docker.io/library/redis:7', 'docker.io/library/redis:7'],
    ['quay.io/x/y:tag@sha256:' + 'b'.repeat(64), 'quay.io/x/y:tag@sha256:' + 'b'.repeat(64)]
  ]
  for (const [input, want] of cases) t.equal(formatReference(parseReference(input)), want, input)
  for (const bad of ['', 'UPPER/case', 'a@sha256:zz', 'a:b:c:', 'host.io/a//b']) {
    t.throws(() => parseReference(bad), { name: 'InvalidReferenceError' }, JSON.stringify(bad))
  }
})

t.test('WWW-Authenticate parsing', async t => {
  t.same(parseChallenge('Bearer realm="https://auth.io/token",service="registry.io",scope="repository:a/b:pull"'), {
    scheme: 'bearer', params: { realm: 'https://auth.io/token', service: 'registry.io', scope: 'repository:a/b:pull' }
  })
  t.same(parseChallenge('Basic realm="x"'), { scheme: 'basic', params: { realm: 'x' } })
})

t.test('against a real registry: manifest, index, blobs and ranges, all verified', async t => {
  const reg = await startRegistry()
  t.teardown(reg.stop)
  const img = await buildImage({ extraLayerSizes: [300_000] })
  await pushImage(reg.url, 'test/app', 'v1', img)
  // An index pointing at the manifest for linux/amd64 and at a second manifest labelled arm64.
  const indexDigest = await pushIndex(reg.url, 'test/app', 'multi', img)

  const client = new RegistryClient({ dockerConfigPath: false, platform: { os: 'linux', architecture: 'amd64' } })
  const m = await client.resolve(parseReference(`${reg.host}/test/app:v1`))
  t.equal(m.digest, img.manifestDigest)
  t.equal(m.manifest.layers.length, 2)
  const viaIndex = await client.resolve(parseReference(`${reg.host}/test/app:multi`))
  t.equal(viaIndex.digest, img.manifestDigest, 'index resolved to linux/amd64')
  t.equal(viaIndex.index?.digest, indexDigest)
  await t.rejects(new RegistryClient({ dockerConfigPath: false, platform: { os: 'linux', architecture: 's390x' } }).resolve(parseReference(`${reg.host}/test/app:multi`)), { name: 'PlatformNotFoundError' })

  const ref = parseReference(`${reg.host}/test/app`)
  const layer = img.layers[1]!
  t.same(await client.getBlob(ref, layer.digest, { size: layer.bytes.length }), layer.bytes)
  t.same(await client.getBlobRange(ref, layer.digest, 1000, 5000), layer.bytes.subarray(1000, 6000))
  const into = new Uint8Array(5010).fill(7)
  const got = await client.getBlobRange(ref, layer.digest, 1000, 5000, { into })
  t.equal(got.buffer, into.buffer, 'a range read into the buffer given')
  t.ok(Buffer.from(got).equals(layer.bytes.subarray(1000, 6000)), 'the range, exact')
  t.same([...into.subarray(5000)], Array(10).fill(7), 'bytes past the range untouched')
  await t.rejects(client.getBlobRange(ref, layer.digest, 0, 5000, { into: new Uint8Array(4999) }), RangeError, 'a buffer too small is refused')
  await t.rejects(client.getBlob(ref, img.layers[0]!.digest, { size: 10 }), { name: 'SizeMismatchError' })
  await t.rejects(client.resolve(parseReference(`${reg.host}/test/app@${sha256Digest(Buffer.from('nope'))}`)), { name: 'RegistryError' })
})

t.test('bearer token auth, credentials from a docker config, retries on 503, mirrors first', async t => {
  let failures = 2
  const seen: string[] = []
  const body = Buffer.from('hello blob')
  const digest = sha256Digest(body)
  const server = createServer((req, res) => {
    seen.push(`${req.method ?? ''} ${req.url ?? ''} ${req.headers.authorization ?? '-'}`)
    const port = (server.address() as { port: number }).port
    if ((req.url ?? '').startsWith('/token')) {
      const ok = req.headers.authorization === 'Basic ' + Buffer.from('alice:secret').toString('base64')
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'T0K' }))
      return
    }
    if (req.headers.authorization !== 'Bearer T0K') {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${port}/token",service="test",scope="repository:a/b:pull"` }).end()
      return
    }
    if (failures-- > 0) { res.writeHead(503).end(); return }
    res.writeHead(200, { 'content-length': String(body.length) }).end(body)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const host = `127.0.0.1:${(server.address() as { port: number }).port}`
  const dir = await mkdtemp(join(tmpdir(), 'bolt-dockercfg-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'config.json'), JSON.stringify({ auths: { [host]: { auth: Buffer.from('alice:secret').toString('base64') } } }))
  const client = new RegistryClient({ dockerConfigPath: join(dir, 'config.json'), backoffMs: 5 })
  t.same(await client.getBlob(parseReference(`${host}/a/b`), digest), body)
  t.ok(seen.some(s => s.startsWith('GET /token')), 'token fetched')
  t.equal(seen.filter(s => s.includes('Bearer T0K')).length, 3, 'two 503s retried, then success')

  const noCreds = new RegistryClient({ dockerConfigPath: false, backoffMs: 5 })
  await t.rejects(noCreds.getBlob(parseReference(`${host}/a/b`), digest), { name: 'RegistryAuthError' })

  // A mirror that is down is skipped; a non-loopback plain-HTTP mirror is refused.
  seen.length = 0
  failures = 0
  const mirrored = new RegistryClient({ dockerConfigPath: join(dir, 'config.json'), backoffMs: 1, retries: 0, mirrors: { 'registry.example': ['http://127.0.0.1:1', 'http://10.0.0.1:5000', `http://${host}`] } })
  t.same(await mirrored.getBlob(parseReference(`registry.example/a/b`), digest), body)
})

t.test('a Docker config.json that cannot be used is said, and the pull goes on without its logins', async t => {
  // A registry that wants a login: a client without one is refused, which is the behaviour to keep.
  const server = createServer((req, res) => {
    res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end()
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const host = `127.0.0.1:${(server.address() as { port: number }).port}`
  const dir = await mkdtemp(join(tmpdir(), 'bolt-dockercfg-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  const digest = sha256Digest(Buffer.from('x'))
  for (const [name, text, said] of [['broken.json', '{ not json', /broken\.json cannot be used/], ['shape.json', '{"auths": 5}', /shape\.json is not a Docker config/]] as const) {
    await writeFile(join(dir, name), text)
    const logged: string[] = []
    const client = new RegistryClient({ dockerConfigPath: join(dir, name), retries: 0, log: m => { logged.push(m) } })
    await t.rejects(client.getBlob(parseReference(`${host}/a/b`), digest), { name: 'RegistryAuthError' })
    t.match(logged.join('\n'), said, `${name}: the log names the file and what is wrong`)
  }
  // No config.json at all is the usual case: nothing to say.
  const logged: string[] = []
  const none = new RegistryClient({ dockerConfigPath: join(dir, 'absent.json'), retries: 0, log: m => { logged.push(m) } })
  await t.rejects(none.getBlob(parseReference(`${host}/a/b`), digest), { name: 'RegistryAuthError' })
  t.same(logged, [], 'a missing config.json is not reported')
})

t.test('a registry that cannot be reached is named with what the connection said', async t => {
  // A port nothing listens on: undici says only "fetch failed" and keeps the reason in its cause.
  const closed = createServer()
  await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve))
  const port = (closed.address() as { port: number }).port
  await new Promise<void>(resolve => closed.close(() => resolve()))
  const client = new RegistryClient({ dockerConfigPath: false, retries: 1, backoffMs: 5 })
  await t.rejects(client.resolve(parseReference(`127.0.0.1:${port}/test/app:v1`)), { name: 'RegistryError', message: new RegExp(`fetch failed \\(connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\\)`) })
})

t.test('a registry that never answers: the error names the URL once and the wait', async t => {
  const silent = createServer(() => { /* never answers */ })
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { silent.closeAllConnections(); await new Promise<void>(resolve => silent.close(() => resolve())) })
  const port = (silent.address() as { port: number }).port
  const client = new RegistryClient({ dockerConfigPath: false, retries: 1, backoffMs: 5, timeoutMs: 200 })
  const err = await client.resolve(parseReference(`127.0.0.1:${port}/test/app:v1`)).then(() => undefined, (e: Error) => e)
  t.match(err?.message, `127.0.0.1:${port}/v2/test/app/manifests/v1: no response within 200 ms`)
  t.equal(err?.message.split(`127.0.0.1:${port}/v2/test/app/manifests/v1`).length, 2, `the URL once: ${err?.message ?? ''}`)
})
