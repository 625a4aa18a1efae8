// The registry's decoders and the upload state machine, fuzzed: Content-Range,
// chunk admission, routes, pushed manifests (any bytes: a CheckedManifest or
// one MirrorRequestError), and the Uploads class against a model (real blob
// store in a temp dir) over random sequences of chunks, resumes and finishes.
import t from 'tap'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import fc from 'fast-check'
import { BlobStore } from '../../p2p/content/blob-store.js'
import { admitChunk, parseContentRange, uploadRangeHeader } from '../../agent/registry/upload-state.js'
import { checkPushedManifest } from '../../agent/registry/manifest-check.js'
import { parsePushPath } from '../../agent/registry/routes.js'
import { Uploads } from '../../agent/registry/uploads.js'
import { presented } from '../../agent/registry/auth.js'

const sha = (b: Uint8Array): string => 'sha256:' + createHash('sha256').update(b).digest('hex')
const isRequestError = (e: unknown): boolean => (e as Error).name === 'MirrorRequestError' && typeof (e as { status?: unknown }).status === 'number'

t.test('Content-Range and chunk admission', async t => {
  t.same(parseContentRange('0-99'), { start: 0, end: 99 })
  t.same(parseContentRange('bytes 10-19/*'), { start: 10, end: 19 })
  t.equal(parseContentRange(undefined), undefined)
  t.throws(() => parseContentRange('9-1'), { code: 'BLOB_UPLOAD_INVALID' })
  t.throws(() => parseContentRange('abc'), { code: 'BLOB_UPLOAD_INVALID' })
  t.equal(admitChunk(100, { start: 100, end: 149 }, 50), 50)
  t.throws(() => admitChunk(100, { start: 0, end: 49 }, 50), { name: 'MirrorRequestError', status: 416 })
  t.throws(() => admitChunk(0, { start: 0, end: 49 }, 10), { name: 'MirrorRequestError', status: 400 })
  t.throws(() => admitChunk(0, undefined, 11, 10), { name: 'MirrorRequestError', status: 413 })
  t.equal(uploadRangeHeader(0), '0-0')
  t.equal(uploadRangeHeader(10), '0-9')
  fc.assert(fc.property(fc.string({ maxLength: 60 }), s => {
    try { const r = parseContentRange(s); return r === undefined || (r.start <= r.end && Number.isSafeInteger(r.end)) } catch (e) { return isRequestError(e) }
  }), { numRuns: 2000 })
  fc.assert(fc.property(fc.nat(1e6), fc.option(fc.record({ start: fc.nat(1e6), end: fc.nat(1e6) }), { nil: undefined }), fc.option(fc.integer({ min: -5, max: 1e6 }), { nil: undefined }), (offset, range, len) => {
    try {
      const n = admitChunk(offset, range, len, 2e6)
      // Admitted: it continues at the offset and stays under the limit.
      return n >= 0 && offset + n <= 2e6 && (range === undefined || range.start === offset)
    } catch (e) { return isRequestError(e) }
  }), { numRuns: 2000 })
})

t.test('routes: any path is a route, undefined or one MirrorRequestError', async t => {
  const D = 'sha256:' + 'b'.repeat(64)
  t.same(parsePushPath('/v2/team/app/blobs/uploads/'), { kind: 'uploads', name: 'team/app' })
  t.same(parsePushPath('/v2/app/blobs/uploads/0b7c2f7e-8d1b-4c6e-9a51-0c9d2b1a3e4f'), { kind: 'upload', name: 'app', id: '0b7c2f7e-8d1b-4c6e-9a51-0c9d2b1a3e4f' })
  t.same(parsePushPath(`/v2/app/manifests/${D}`), { kind: 'manifest', name: 'app', reference: D })
  t.same(parsePushPath('/v2/token'), { kind: 'token' })
  t.equal(parsePushPath('/other'), undefined)
  t.throws(() => parsePushPath('/v2/app/blobs/uploads/..'), { name: 'MirrorRequestError', status: 404 })
  t.equal(parsePushPath('/v2/app/blobs/uploads/../../x'), undefined)
  const unit = fc.constantFrom('/v2/', '/', 'a', 'b', '0', '.', '_', '-', '%', '%2F', 'blobs', 'uploads', 'manifests', 'tags', 'list', 'token', 'referrers', 'sha256:', 'b'.repeat(64), ':', 'A', '..', '0b7c2f7e-8d1b-4c6e-9a51-0c9d2b1a3e4f')
  fc.assert(fc.property(fc.array(unit, { maxLength: 12 }).map(a => a.join('')), p => {
    for (const path of [p, '/v2/' + p]) {
      try {
        const r = parsePushPath(path)
        if (r !== undefined && 'name' in r && (r.name.includes('..') || r.name.startsWith('/') || /[A-Z%]/.test(r.name))) return false
      } catch (e) { if (!isRequestError(e)) return false }
    }
    return true
  }), { numRuns: 3000 })
})

t.test('credentials: Bearer and Basic, anything else none', async t => {
  t.equal(presented('Bearer abc'), 'abc')
  t.equal(presented('Basic ' + Buffer.from('bolt:s3cret').toString('base64')), 's3cret')
  t.equal(presented('Digest x'), undefined)
  fc.assert(fc.property(fc.string({ maxLength: 200 }), s => { const p = presented(s); return p === undefined || typeof p === 'string' }), { numRuns: 2000 })
})

const descriptor = fc.record({
  mediaType: fc.constantFrom('application/vnd.oci.image.layer.v1.tar', 'application/vnd.oci.image.config.v1+json'),
  digest: fc.stringMatching(/^[a-f0-9]{64}$/).map(h => 'sha256:' + h),
  size: fc.nat(1e9)
})

t.test('pushed manifests: generated ones pass, any bytes give a result or one 4xx', async t => {
  fc.assert(fc.property(descriptor, fc.array(descriptor, { maxLength: 8 }), fc.boolean(), (config, layers, docker) => {
    const mt = docker ? 'application/vnd.docker.distribution.manifest.v2+json' : 'application/vnd.oci.image.manifest.v1+json'
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: mt, config, layers }))
    const m = checkPushedManifest(bytes, sha(bytes), mt)
    const names = new Set([config, ...layers].map(d => d.digest))
    return m.kind === 'manifest' && m.digest === sha(bytes) && m.mediaType === mt && m.blobs.length === names.size
  }).beforeEach(() => {}), { numRuns: 500 })
  fc.assert(fc.property(fc.array(descriptor, { maxLength: 8 }), manifests => {
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }))
    const m = checkPushedManifest(bytes, 'v1', undefined)
    return m.kind === 'index' && m.children.length === manifests.length && m.blobs.length === 0
  }), { numRuns: 300 })
  // Arbitrary bytes and mutated JSON: never anything but a result or a MirrorRequestError.
  const json = fc.jsonValue({ maxDepth: 4 }).map(v => Buffer.from(JSON.stringify(v)))
  const mutated = fc.tuple(descriptor, fc.array(descriptor, { maxLength: 3 }), fc.dictionary(fc.constantFrom('schemaVersion', 'config', 'layers', 'manifests', 'mediaType', 'subject'), fc.jsonValue({ maxDepth: 2 }))).map(([config, layers, extra]) => Buffer.from(JSON.stringify({ schemaVersion: 2, config, layers, ...extra })))
  fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), json, mutated), fc.constantFrom('latest', 'sha256:' + 'c'.repeat(64)), fc.constantFrom(undefined, 'application/json', 'application/vnd.oci.image.manifest.v1+json', 'text/plain'), (bytes, ref, ct) => {
    try {
      const m = checkPushedManifest(bytes, ref, ct)
      return ref === 'latest' && m.digest === sha(bytes)
    } catch (e) { return isRequestError(e) && (e as { status: number }).status < 500 }
  }), { numRuns: 3000 })
  t.throws(() => checkPushedManifest(Buffer.from('{}'), 'sha256:' + 'c'.repeat(64), undefined), { code: 'DIGEST_INVALID' })
})

type Op = { t: 'chunk', len: number, lie: 'none' | 'start' | 'length' } | { t: 'status' } | { t: 'finish', right: boolean } | { t: 'cancel' } | { t: 'restart' }

t.test('uploads against a model: offsets, resumes (also across an agent restart), digest checks; a failed finish stores nothing', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-uploads-fuzz-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const store = await BlobStore.open({ root: dir })
  t.teardown(async () => { await store.close() })
  let uploads = new Uploads(store, 1 << 20)
  t.teardown(async () => { await uploads.close() })
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ t: fc.constant('chunk' as const), len: fc.nat(3000), lie: fc.constantFrom('none', 'none', 'none', 'start', 'length') }),
    fc.constant({ t: 'status' as const }),
    fc.record({ t: fc.constant('finish' as const), right: fc.boolean() }),
    fc.constant({ t: 'cancel' as const }),
    fc.constant({ t: 'restart' as const }))
  await fc.assert(fc.asyncProperty(fc.array(op, { maxLength: 12 }), fc.integer({ min: 1, max: 255 }), async (ops, seed) => {
    let { id } = await uploads.start('team/app')
    let model: Buffer[] = []
    let open = true
    let n = 0
    // A run that fails leaves nothing open, so the shrinker's next runs start clean
    // (otherwise each fails on this run's leftovers and the counterexample it reports means nothing).
    try {
      for (const o of ops) {
        if (!open) { ({ id } = await uploads.start('team/app')); model = []; open = true }
        const offset = model.reduce((a, b) => a + b.length, 0)
        if (o.t === 'chunk') {
          const data = Buffer.alloc(o.len, (seed + n++) & 0xff)
          // An empty chunk is sent without a range (a client has none to send), so it cannot lie about its start.
          const lie = o.len === 0 && o.lie === 'start' ? 'none' : o.lie
          const start = lie === 'start' ? offset + 1 : offset
          const declared = lie === 'length' ? o.len + 1 : o.len
          try {
            const r = await uploads.append('team/app', id, Readable.from([data]), o.len === 0 && lie !== 'length' ? undefined : { start, end: start + declared - 1 }, declared)
            if (lie === 'start') return false
            model.push(data)
            if (r.offset !== offset + o.len) return false
          } catch (e) {
            if (!isRequestError(e)) throw e
            if (lie === 'none') return false
            // A lying length keeps what arrived (the client resumes from the offset); a wrong start keeps nothing.
            if (lie === 'length') model.push(data)
          }
          if ((await uploads.status('team/app', id)).offset !== model.reduce((a, b) => a + b.length, 0)) return false
        } else if (o.t === 'status') {
          if ((await uploads.status('team/app', id)).offset !== offset) return false
        } else if (o.t === 'restart') {
          // The agent stops and starts again: the upload goes on from its bytes on disk.
          await uploads.close()
          uploads = new Uploads(store, 1 << 20)
          if ((await uploads.status('team/app', id)).offset !== offset) return false
        } else if (o.t === 'finish') {
          const bytes = Buffer.concat(model)
          const digest = o.right ? sha(bytes) : sha(Buffer.concat([bytes, Buffer.from('x')]))
          try {
            await uploads.finish('team/app', id, digest)
            if (!o.right || store.sizeSync(digest) !== bytes.length) return false
            await store.delete(digest)
          } catch (e) {
            if (o.right || (e as { code?: string }).code !== 'DIGEST_INVALID' || store.hasSync(digest)) return false
          }
          open = false
        } else {
          await uploads.cancel('team/app', id)
          open = false
        }
      }
      if (open) await uploads.cancel('team/app', id)
      open = false
    } finally {
      if (open) await uploads.cancel('team/app', id).catch(() => {}) // the run's own failure is the one to report
    }
    return uploads.size === 0 && (await readdir(join(dir, 'tmp'))).length === 0 && (await readdir(join(dir, 'uploads'))).length === 0
  }), { numRuns: 150 })
  await t.rejects(uploads.status('other/repo', '0b7c2f7e-8d1b-4c6e-9a51-0c9d2b1a3e4f'), { code: 'BLOB_UPLOAD_UNKNOWN' })
  await t.rejects(uploads.status('team/app', '../../etc/passwd'), { code: 'BLOB_UPLOAD_UNKNOWN' }, 'an id that is not ours names no file')
  const { id } = await uploads.start('team/app')
  await uploads.close()
  uploads = new Uploads(store, 1 << 20)
  await t.rejects(uploads.status('other/repo', id), { code: 'BLOB_UPLOAD_UNKNOWN' }, 'after a restart an upload is still only its own repository\'s')
  t.equal((await uploads.status('team/app', id)).offset, 0)
  await uploads.cancel('team/app', id)
})
