// Pure parts of the mirror: routes, upstream choice, Range, snippets, tag cache.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { parseMirrorPath, parseRange, upstreamReference } from '../../agent/mirror/request.js'
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
