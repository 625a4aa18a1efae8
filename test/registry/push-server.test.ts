// The push API on one mirror listener, with real skopeo as the client: a
// real blob store, an in-memory stand-in for the Raft KV (the real one is in
// push-agents.test.ts) and no peers. Pushes need the credential; digests
// are checked on every blob and manifest; chunked uploads resume.
import t from 'tap'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readdir, readFile, stat } from 'node:fs/promises'
import { request } from 'node:http'
import { join } from 'node:path'
import { AUTH, CRED, setup } from '../helpers/push-registry.js'
import { buildImage, writeImageLayout } from '../helpers/registry.js'

const sha = (b: Uint8Array): string => 'sha256:' + createHash('sha256').update(b).digest('hex')

async function skopeo (args: string[]): Promise<{ code: number, out: string }> {
  return await new Promise(resolve => {
    execFile('skopeo', args, { timeout: 120_000, maxBuffer: 8 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? 1), out: stdout + stderr })
    })
  })
}

const haveSkopeo = existsSync('/usr/bin/skopeo')

t.test('skopeo pushes a multi-layer image with the credential and pulls it back anonymously', { skip: haveSkopeo ? false : 'needs skopeo' }, async t => {
  const { base, host, store, kv, dir, registry } = await setup(t)
  const img = await buildImage({ extraLayerSizes: [2 * 1024 * 1024 + 7, 300 * 1024] })
  const layout = join(dir, 'layout')
  await writeImageLayout(layout, 'v1', img)

  const ping = await fetch(`${base}/v2/`)
  t.equal(ping.status, 401, 'the ping asks for a token')
  t.match(ping.headers.get('www-authenticate') ?? '', /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/v2\/token",service="bolt-registry"/)
  const anon = await (await fetch(`${base}/v2/token`)).json() as { token: string }
  t.equal(anon.token, 'anonymous', 'anyone gets a pull token')
  t.equal((await fetch(`${base}/v2/token`, { headers: { authorization: 'Basic ' + Buffer.from('bolt:wrong').toString('base64') } })).status, 401, 'a wrong credential gets none')

  const denied = await skopeo(['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${host}/team/app:v1`])
  t.not(denied.code, 0, 'a push without the credential fails')
  t.equal(store.usage().blobs, 0, 'and stored nothing')
  t.equal(kv.map.size, 0, 'and wrote nothing to the catalog')

  const pushed = await skopeo(['copy', '--dest-tls-verify=false', '--preserve-digests', '--dest-creds', `bolt:${CRED}`, `oci:${layout}:v1`, `docker://${host}/team/app:v1`])
  t.equal(pushed.code, 0, pushed.code === 0 ? 'skopeo pushes with the credential' : pushed.out)
  t.same(await (await fetch(`${base}/v2/team/app/tags/list`)).json(), { name: 'team/app', tags: ['v1'] })
  const inspect = await skopeo(['inspect', '--tls-verify=false', `docker://${host}/team/app:v1`])
  t.equal(inspect.code, 0, inspect.out)
  t.equal((JSON.parse(inspect.out) as { Digest: string }).Digest, img.manifestDigest, 'the manifest kept its digest')
  const out = join(dir, 'pulled')
  const pulled = await skopeo(['copy', '--src-tls-verify=false', `docker://${host}/team/app:v1`, `dir:${out}`])
  t.equal(pulled.code, 0, pulled.code === 0 ? 'an anonymous pull works' : pulled.out)
  for (const d of [img.configDigest, ...img.layers.map(l => l.digest)]) t.equal(sha(await readFile(join(out, d.slice(7)))), d, `blob ${d.slice(0, 19)} verified`)

  await t.test('a tag delete needs the credential, then the repository is gone', async t => {
    t.equal((await fetch(`${base}/v2/team/app/manifests/v1`, { method: 'DELETE' })).status, 401)
    t.equal((await fetch(`${base}/v2/team/app/manifests/v1`, { method: 'DELETE', headers: AUTH })).status, 202)
    t.equal((await fetch(`${base}/v2/team/app/tags/list`, { headers: AUTH })).status, 404)
  })

  await t.test('the unnamed image is collected after the grace period, not before', async t => {
    const digests = [img.manifestDigest, img.configDigest, ...img.layers.map(l => l.digest)]
    const onDisk = async (): Promise<number> => { let n = 0; for (const d of digests) n += (await stat(store.blobPath(d)).catch(() => undefined))?.size ?? 0; return n }
    t.ok(await onDisk() >= img.blobBytes, 'held before')
    const now = Date.now()
    t.same((await registry.gc!.run(now)).deletedBlobs, [], 'first seen unnamed: kept')
    t.same((await registry.gc!.run(now + 59_000)).deletedBlobs, [], 'within the grace period: kept')
    const r = await registry.gc!.run(now + 61_000)
    t.equal(r.deletedBlobs.length, digests.length, 'after it: every blob deleted')
    t.equal(await onDisk(), 0, 'no byte left on disk')
    t.equal(kv.map.size, 0, 'the manifest record left the catalog')
  })
})

t.test('digests: DIGEST_INVALID and MANIFEST_BLOB_UNKNOWN store nothing; a mount finds a held blob', async t => {
  const { base, store, kv } = await setup(t)
  const bytes = Buffer.from('layer bytes')
  const wrong = sha(Buffer.from('other bytes'))
  const bad = await fetch(`${base}/v2/app/blobs/uploads/?digest=${wrong}`, { method: 'POST', body: bytes, headers: AUTH })
  t.equal(bad.status, 400)
  t.equal(((await bad.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'DIGEST_INVALID')
  t.equal(store.usage().blobs, 0, 'nothing stored')

  const noAuth = await fetch(`${base}/v2/app/blobs/uploads/?digest=${sha(bytes)}`, { method: 'POST', body: bytes })
  t.equal(noAuth.status, 401)
  t.match(noAuth.headers.get('www-authenticate') ?? '', /scope="repository:app:pull,push"/)
  t.equal(store.usage().blobs, 0, 'nothing stored without the credential')

  const ok = await fetch(`${base}/v2/app/blobs/uploads/?digest=${sha(bytes)}`, { method: 'POST', body: bytes, headers: AUTH })
  t.equal(ok.status, 201, 'a monolithic POST stores the blob')
  t.equal(ok.headers.get('docker-content-digest'), sha(bytes))
  const mount = await fetch(`${base}/v2/other/blobs/uploads/?mount=${sha(bytes)}&from=app`, { method: 'POST', headers: AUTH })
  t.equal(mount.status, 201, 'a cross-repository mount of a held blob')

  const config = Buffer.from('{}')
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(bytes), size: bytes.length }] }))
  const unknown = await fetch(`${base}/v2/app/manifests/v1`, { method: 'PUT', body: manifest, headers: { ...AUTH, 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(unknown.status, 400)
  t.equal(((await unknown.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'MANIFEST_BLOB_UNKNOWN', 'the config was never pushed')
  t.equal(kv.map.size, 0, 'no catalog entry')
  t.notOk(store.hasSync(sha(manifest)), 'the manifest is not stored')

  const byWrongDigest = await fetch(`${base}/v2/app/manifests/${wrong}`, { method: 'PUT', body: manifest, headers: { ...AUTH, 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(((await byWrongDigest.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'DIGEST_INVALID')
  t.equal((await fetch(`${base}/v2/app/blobs/uploads/?digest=${sha(config)}`, { method: 'POST', body: config, headers: AUTH })).status, 201)
  const put = await fetch(`${base}/v2/app/manifests/${sha(manifest)}`, { method: 'PUT', body: manifest, headers: { ...AUTH, 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(put.status, 201, 'by digest once its blobs are held')
  const get = await fetch(`${base}/v2/app/manifests/${sha(manifest)}`)
  t.equal(get.status, 200)
  t.equal(sha(new Uint8Array(await get.arrayBuffer())), sha(manifest))
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(manifest), size: manifest.length, platform: { architecture: 'amd64', os: 'linux' } }] }))
  t.equal((await fetch(`${base}/v2/app/manifests/multi`, { method: 'PUT', body: index, headers: { ...AUTH, 'content-type': 'application/vnd.oci.image.index.v1+json' } })).status, 201, 'an index over a cluster manifest')
  t.equal((await fetch(`${base}/v2/app/blobs/${sha(bytes)}`, { method: 'DELETE', headers: AUTH })).status, 405, 'a blob a manifest names is not deleted')

  // The referrers API: an artifact whose subject is the manifest.
  const sbom = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: 'application/vnd.example.sbom', config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha(config), size: config.length }, layers: [], subject: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(manifest), size: manifest.length } }))
  const putSbom = await fetch(`${base}/v2/app/manifests/${sha(sbom)}`, { method: 'PUT', body: sbom, headers: { ...AUTH, 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(putSbom.status, 201)
  t.equal(putSbom.headers.get('oci-subject'), sha(manifest), 'the PUT names its subject')
  const refs = await fetch(`${base}/v2/app/referrers/${sha(manifest)}`)
  t.equal(refs.status, 200)
  t.match(await refs.json(), { schemaVersion: 2, manifests: [{ digest: sha(sbom), artifactType: 'application/vnd.example.sbom', size: sbom.length }] }, 'the referrers list it')
  const filtered = await fetch(`${base}/v2/app/referrers/${sha(manifest)}?artifactType=other`)
  t.same(((await filtered.json()) as { manifests: unknown[] }).manifests, [], 'filtered by artifactType')
  t.equal(filtered.headers.get('oci-filters-applied'), 'artifactType')
})

/** A PATCH whose body stops after `send` of its `declared` bytes (the client dies mid-chunk). */
async function brokenPatch (url: string, from: number, send: Buffer, declared: number): Promise<void> {
  await new Promise<void>(resolve => {
    const req = request(url, { method: 'PATCH', headers: { ...AUTH, 'content-type': 'application/octet-stream', 'content-length': declared, 'content-range': `${from}-${from + declared - 1}` } })
    req.on('error', () => resolve())
    req.on('response', res => { res.resume(); res.on('end', resolve) })
    req.write(send, () => { setImmediate(() => req.destroy()) })
  })
}

t.test('a chunked upload interrupted mid-chunk resumes from the offset GET reports', async t => {
  const { base, store, dir } = await setup(t)
  const blob = Buffer.alloc(300 * 1024)
  for (let i = 0; i < blob.length; i++) blob[i] = (i * 7) & 0xff
  const start = await fetch(`${base}/v2/app/blobs/uploads/`, { method: 'POST', headers: AUTH })
  t.equal(start.status, 202)
  const loc = new URL(start.headers.get('location') ?? '', base).toString()
  const first = blob.subarray(0, 100 * 1024)
  const p1 = await fetch(loc, { method: 'PATCH', body: first, headers: { ...AUTH, 'content-range': `0-${first.length - 1}` } })
  t.equal(p1.status, 202)
  t.equal(p1.headers.get('range'), `0-${first.length - 1}`)
  // The next chunk dies after 50 KiB of its 200 KiB.
  await brokenPatch(loc, first.length, blob.subarray(first.length, first.length + 50 * 1024), 200 * 1024)
  let offset = 0
  for (let i = 0; i < 100; i++) {
    const st = await fetch(loc, { headers: AUTH })
    t.equal(st.status, 204)
    offset = Number((st.headers.get('range') ?? '0-0').split('-')[1]) + 1
    if (offset > first.length) break
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  t.ok(offset > first.length && offset <= first.length + 50 * 1024, `the bytes that arrived are kept (offset ${offset})`)
  const wrongStart = await fetch(loc, { method: 'PATCH', body: blob.subarray(0, 10), headers: { ...AUTH, 'content-range': '0-9' } })
  t.equal(wrongStart.status, 416, 'a chunk that does not continue the upload is refused')
  const rest = blob.subarray(offset)
  const fin = await fetch(`${loc}?digest=${sha(blob)}`, { method: 'PUT', body: rest, headers: { ...AUTH, 'content-range': `${offset}-${blob.length - 1}` } })
  t.equal(fin.status, 201, 'the resumed upload completes')
  t.equal(store.sizeSync(sha(blob)), blob.length)
  t.same((await readdir(join(dir, 'store', 'tmp'))).filter(n => n.startsWith('upload-')), [], 'no upload file left')
})
