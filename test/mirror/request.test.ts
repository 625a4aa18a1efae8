// Pure parts of the mirror: routes, upstream choice, Range, snippets, tag cache.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { allowedRegistries, checkRegistryAllowed, parseMirrorPath, parseNamespace, parseRange, upstreamReference } from '../../agent/mirror/request.js'
import { isInternalAddress, privateHostAllowed } from '../../agent/mirror/upstream-guard.js'
import { HostCheck, hostHeaderName } from '../../agent/http-host.js'
import { mirrorConfigSnippet } from '../../agent/mirror/host-config.js'
import { FileTagResolutions } from '../../agent/mirror/tag-cache.js'

const D = 'sha256:' + 'a'.repeat(64)

t.test('routes', async t => {
  t.same(parseMirrorPath('/v2/'), { kind: 'base' })
  t.same(parseMirrorPath('/v2/library/busybox/manifests/latest'), { kind: 'manifest', name: 'library/busybox', reference: 'latest' })
  t.same(parseMirrorPath(`/v2/a/b/c/blobs/${D}`), { kind: 'blob', name: 'a/b/c', digest: D })
  t.same(parseMirrorPath(`/v2/x/manifests/${D}`), { kind: 'manifest', name: 'x', reference: D })
  t.throws(() => parseMirrorPath('/v2/UPPER/manifests/latest'), { name: 'MirrorRequestError', code: 'NAME_INVALID' })
  t.throws(() => parseMirrorPath('/v2/x/blobs/latest'), { name: 'MirrorRequestError', code: 'DIGEST_INVALID' })
  t.throws(() => parseMirrorPath('/v2/x/blobs/uploads/'), { name: 'MirrorRequestError' })
  t.throws(() => parseMirrorPath('/other'), { name: 'MirrorRequestError', status: 404 })
})

t.test('upstream from ns= or the default, with Docker Hub\'s library/ rule', async t => {
  t.same(upstreamReference('busybox', null, 'registry-1.docker.io'), { registry: 'docker.io', repository: 'library/busybox' })
  t.same(upstreamReference('busybox', 'docker.io', 'ghcr.io'), { registry: 'docker.io', repository: 'library/busybox' })
  t.same(upstreamReference('org/app', 'ghcr.io', 'registry-1.docker.io'), { registry: 'ghcr.io', repository: 'org/app' })
  t.same(upstreamReference('app', '127.0.0.1:5000', 'registry-1.docker.io'), { registry: '127.0.0.1:5000', repository: 'app' })
})

t.test('Range', async t => {
  t.equal(parseRange(undefined, 100), undefined)
  t.same(parseRange('bytes=10-19', 100), { start: 10, end: 19 })
  t.same(parseRange('bytes=90-', 100), { start: 90, end: 99 })
  t.same(parseRange('bytes=-5', 100), { start: 95, end: 99 })
  t.same(parseRange('bytes=50-500', 100), { start: 50, end: 99 })
  t.equal(parseRange('bytes=100-', 100), 'unsatisfiable')
  t.equal(parseRange('bytes=0-1,5-6', 100), undefined)
  fc.assert(fc.property(fc.string(), fc.nat(1 << 20), (h, size) => {
    const r = parseRange(h, size)
    if (r === undefined || r === 'unsatisfiable') return true
    return r.start >= 0 && r.start <= r.end && r.end < size
  }))
  fc.assert(fc.property(fc.nat(1000), fc.nat(1000), fc.integer({ min: 1, max: 2000 }), (a, b, size) => {
    const r = parseRange(`bytes=${a}-${a + b}`, size)
    if (a >= size) return r === 'unsatisfiable'
    return typeof r === 'object' && r.start === a && r.end === Math.min(a + b, size - 1)
  }))
})

t.test('snippets', async t => {
  const c = mirrorConfigSnippet('containerd', 'http://127.0.0.1:5050', 'registry-1.docker.io')
  t.match(c, 'server = "https://registry-1.docker.io"')
  t.match(c, '[host."http://127.0.0.1:5050"]')
  t.match(c, 'capabilities = ["pull", "resolve"]')
  const d = mirrorConfigSnippet('docker', 'http://127.0.0.1:5050')
  t.same(JSON.parse(d.slice(d.indexOf('{'))), { 'registry-mirrors': ['http://127.0.0.1:5050'] })
  const p = mirrorConfigSnippet('podman', 'http://127.0.0.1:5050', 'ghcr.io')
  t.match(p, 'prefix = "ghcr.io"')
  t.match(p, 'location = "127.0.0.1:5050"')
  t.match(p, 'insecure = true')
})

t.test('tag resolutions persist', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-mirror-tags-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const a = new FileTagResolutions(join(dir, 'tags.json'))
  await a.set('r/x:1', { digest: D, mediaType: 'm', at: 1 })
  const b = new FileTagResolutions(join(dir, 'tags.json'))
  t.same(await b.get('r/x:1'), { digest: D, mediaType: 'm', at: 1 })
  t.equal(await b.get('r/x:2'), undefined)
})

/** Characters that make a registry name into something else: paths, queries, userinfo, escapes. */
const tricky = fc.string({ unit: fc.constantFrom('a', 'z', '0', '9', '.', '-', ':', '/', '?', '#', '@', '[', ']', '%', ' ', '\\', 'A', '_', '\n', 'é') })
const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?$/)
const validHost = fc.tuple(fc.array(label, { minLength: 1, maxLength: 4 }), fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }))
  .map(([labels, port]) => labels.join('.') + (port === undefined ? '' : `:${port}`))
  .filter(h => !/(?:^|\.)(?:0x[0-9a-f]*|\d+)(?::\d+)?$/.test(h) && !/^localhost(?::|$)|\.localhost(?::|$)/.test(h))

t.test('ns=: only host[:port], never a path, query, fragment, userinfo or private address (fuzzed)', async t => {
  t.equal(parseNamespace('ghcr.io'), 'ghcr.io')
  t.equal(parseNamespace('Registry.Example:5000'), 'registry.example:5000')
  t.equal(parseNamespace('[2001:4860::8888]:443'), '[2001:4860::8888]:443')
  for (const bad of ['127.0.0.1:5000/admin/delete?x=', 'ghcr.io/x', 'ghcr.io?x', 'ghcr.io#x', 'u:p@ghcr.io', 'https://ghcr.io', 'ghcr.io:0', 'ghcr.io:99999', 'a:09', 'ghcr.io:0443', '1.2.3', '0x7f', 'a.0x7f', '2130706433', 'x.123', '[zz]:1', '', ' ghcr.io', 'ghcr.io..', '-x.io']) {
    t.throws(() => parseNamespace(bad), { name: 'MirrorRequestError', status: 400 }, JSON.stringify(bad))
  }
  for (const priv of ['127.0.0.1', '10.1.2.3:5000', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '[::1]', '[fe80::1]:80', '[fd00::1]', '[::ffff:127.0.0.1]', 'localhost', 'x.localhost:1']) {
    t.throws(() => parseNamespace(priv), { name: 'MirrorRequestError', status: 400, code: 'DENIED' }, `${priv} is private`)
  }
  t.equal(parseNamespace('127.0.0.1:5000', ['127.0.0.1:5000']), '127.0.0.1:5000', 'allowed when allow_private_hosts names it')
  t.throws(() => parseNamespace('127.0.0.1:5001', ['127.0.0.1:5000']), { code: 'DENIED' }, 'another port is another host')
  t.equal(parseNamespace('8.8.8.8:443'), '8.8.8.8:443', 'a public literal passes (the allow-list decides)')

  // Whatever it is given, the parser returns a bare authority that a URL keeps as is, or throws a 400.
  fc.assert(fc.property(tricky, ns => {
    let out: string
    try {
      out = parseNamespace(ns)
    } catch (err) {
      return (err as { name: string, status: number }).name === 'MirrorRequestError' && (err as { status: number }).status === 400
    }
    if (/[/?#@\\\s%]/.test(out)) return false
    const u = new URL(`https://${out}/v2/x/manifests/y`)
    return u.pathname === '/v2/x/manifests/y' && u.username === '' && u.search === '' && (out.startsWith('[') || u.host === out || u.host + ':443' === out)
  }), { numRuns: 5000 })
  // A valid host with a path, query, fragment or userinfo around it is always refused.
  fc.assert(fc.property(validHost, fc.constantFrom('/', '?', '#', '@', '%2F'), fc.string({ maxLength: 20 }), (host, sep, rest) => {
    const ns = sep === '@' ? `${rest}@${host}` : `${host}${sep}${rest}`
    try { parseNamespace(ns) } catch (err) { return (err as Error).name === 'MirrorRequestError' }
    return false
  }), { numRuns: 3000 })
  fc.assert(fc.property(validHost, host => parseNamespace(host) === host.toLowerCase()))
})

t.test('the registry allow-list: the upstream and Docker Hub by default, Docker Hub under any name', async t => {
  const dflt = allowedRegistries(undefined, 'registry-1.docker.io')
  t.doesNotThrow(() => { checkRegistryAllowed('docker.io', dflt) })
  t.doesNotThrow(() => { checkRegistryAllowed('index.docker.io', dflt) })
  t.throws(() => { checkRegistryAllowed('ghcr.io', dflt) }, { status: 400, code: 'DENIED' })
  const listed = allowedRegistries(['ghcr.io', 'quay.io'], 'registry.example:5000')
  t.doesNotThrow(() => { checkRegistryAllowed('registry.example:5000', listed) }, 'the upstream is always allowed')
  t.doesNotThrow(() => { checkRegistryAllowed('quay.io', listed) })
  t.throws(() => { checkRegistryAllowed('docker.io', listed) }, 'a list without Docker Hub leaves it out')
})

t.test('internal addresses', async t => {
  for (const a of ['127.0.0.1', '127.255.0.9', '10.0.0.1', '172.31.255.255', '192.168.0.1', '169.254.169.254', '100.100.100.100', '0.0.0.0', '224.0.0.1', '255.255.255.255', '::1', '::', 'fe80::1', 'fd12:3456::1', '::ffff:10.0.0.1', '::ffff:a00:1', '[::1]']) t.ok(isInternalAddress(a), a)
  for (const a of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '2606:4700::1111', '::ffff:8.8.8.8', 'example.com']) t.notOk(isInternalAddress(a), a)
  t.ok(privateHostAllowed(['*'], new URL('http://10.0.0.1:5000/')))
  t.ok(privateHostAllowed(['minio.lan'], new URL('https://minio.lan:9000/x')), 'a host without a port: any port')
  t.ok(privateHostAllowed(['minio.lan:443'], new URL('https://minio.lan/x')), 'default ports spelled out')
  t.notOk(privateHostAllowed(['minio.lan:80'], new URL('https://minio.lan/x')))
  t.notOk(privateHostAllowed([], new URL('http://127.0.0.1/')))
})

t.test('mirror paths: any input is a route with checked parts or a MirrorRequestError (fuzzed)', async t => {
  t.throws(() => parseMirrorPath('/v2/%E0%A4%A/manifests/x'), { name: 'MirrorRequestError', status: 400 }, 'a malformed escape is a 400, not a 500')
  const pathUnit = fc.constantFrom('/v2/', '/', 'a', 'b', '0', '.', '_', '-', '%', '%2F', '%2e', 'manifests', 'blobs', 'tags', 'list', 'sha256:', 'a'.repeat(64), ':', '?', ' ', 'A', '..')
  fc.assert(fc.property(fc.array(pathUnit, { maxLength: 12 }).map(a => a.join('')), fc.string({ maxLength: 30 }), (p, tail) => {
    for (const path of [p, '/v2/' + p, '/v2/' + p + tail]) {
      let r
      try {
        r = parseMirrorPath(path)
      } catch (err) {
        if ((err as Error).name !== 'MirrorRequestError') return false
        continue
      }
      if (r.kind === 'base') continue
      if (r.name.length > 255 || !r.name.split('/').every(c => /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/.test(c))) return false
      if (r.kind === 'blob' && !/^sha256:[a-f0-9]{64}$/.test(r.digest)) return false
      if (r.kind === 'manifest' && /[/?#\s]/.test(r.reference)) return false
    }
    return true
  }), { numRuns: 5000 })
})

t.test('Host check: loopback names, the bound address and configured names only (fuzzed)', async t => {
  const hc = new HostCheck(['bolt.internal'])
  hc.bind('127.0.0.1')
  for (const h of ['127.0.0.1:5050', 'localhost:5050', 'LOCALHOST', '[::1]:5050', 'bolt.internal:5050', 'bolt.internal']) t.ok(hc.allows(h), h)
  for (const h of [undefined, '', 'evil.example:5050', 'evil.example', '10.0.0.1:5050', 'bolt.internal.evil.example', 'localhost.evil.example', '127.0.0.1.nip.io:5050', 'user@127.0.0.1', '127.0.0.1/x']) t.notOk(hc.allows(h), String(h))
  t.equal(hostHeaderName('[::1]:80'), '::1')
  const any = new HostCheck()
  any.bind('0.0.0.0')
  t.ok(any.allows('127.0.0.1:1'), 'a wildcard listener: loopback')
  t.notOk(any.allows('192.0.2.77:1'), 'a wildcard listener: not an address of this machine')
  fc.assert(fc.property(tricky, h => {
    const ok = hc.allows(h)
    if (!ok) return true
    const name = hostHeaderName(h)
    return name !== undefined && !/[/?#@\s]/.test(h) && (name === 'bolt.internal' || name === 'localhost' || name === '::1' || name.startsWith('127.') || name.endsWith('.localhost'))
  }), { numRuns: 5000 })
})
