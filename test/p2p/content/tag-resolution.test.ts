// A start of a tag resolved before asks the registry one HEAD (issue 25):
// requests counted per start against a real docker-registry, for a
// single-platform tag and a multi-platform index; a moved tag, a HEAD with
// no usable digest, a HEAD refused, and a registry that is down. `lookup`
// (every start) sees each change of index.json, its own writes or a hand edit.
import t from 'tap'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BlobStore } from '../../../p2p/content/blob-store.js'
import { ImagePuller } from '../../../p2p/content/image-puller.js'
import { RegistryClient } from '../../../p2p/content/registry-client.js'
import { buildImage, pushImage, pushIndex, startRegistry, REGISTRY_BIN } from '../../helpers/registry.js'

interface Counted { puller: ImagePuller, requests: string[], store: BlobStore }
/** What the fetch wrapper may do to a HEAD: pass it, strip its digest, answer it itself. */
type HeadMode = 'pass' | 'no-digest' | 'bad-digest' | '405'

async function counted (t: { teardown: (fn: () => Promise<void>) => void }, mode: () => HeadMode = () => 'pass'): Promise<Counted> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-tagres-'))
  const store = await BlobStore.open({ root: dir, pieceSize: 64 * 1024 })
  t.teardown(async () => { await store.close(); await rm(dir, { recursive: true, force: true }) })
  const requests: string[] = []
  const fetchFn: typeof fetch = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : input.toString())
    const method = init?.method ?? 'GET'
    requests.push(`${method} ${url.pathname.replace(/^\/v2\/[^/]+\/[^/]+\//, '')}`)
    const res = await fetch(input, init)
    if (method !== 'HEAD' || mode() === 'pass') return res
    await res.body?.cancel()
    if (mode() === '405') return new Response(null, { status: 405 })
    const headers = new Headers(res.headers)
    if (mode() === 'no-digest') headers.delete('docker-content-digest')
    else headers.set('docker-content-digest', 'sha256:zz')
    return new Response(null, { status: res.status, headers })
  }
  const registry = new RegistryClient({ dockerConfigPath: false, fetch: fetchFn, retries: 0, platform: { os: 'linux', architecture: 'amd64' } })
  return { puller: new ImagePuller({ store, registry }), requests, store }
}

t.test('a tag resolved before costs one HEAD per start; a moved tag is fetched and verified again', { skip: existsSync(REGISTRY_BIN) ? false : 'needs docker-registry' }, async t => {
  const reg = await startRegistry()
  t.teardown(reg.stop)
  const v1 = await buildImage()
  const v2 = await buildImage({ extraLayerSizes: [64] })
  await pushImage(reg.url, 'tags/single', 'v', v1)
  await pushImage(reg.url, 'tags/multi', 'v-amd64', v1)
  const indexDigest = await pushIndex(reg.url, 'tags/multi', 'v', v1)

  await t.test('single-platform tag', async t => {
    const { puller, requests } = await counted(t)
    const ref = `${reg.host}/tags/single:v`
    const first = await puller.resolveTag(ref)
    t.same(first, { tag: v1.manifestDigest, digest: v1.manifestDigest })
    t.same(requests, ['GET manifests/v'], 'first start: the manifest')
    requests.length = 0
    for (let i = 0; i < 3; i++) t.same(await puller.resolveTag(ref, undefined, first), first)
    t.same(requests, ['HEAD manifests/v', 'HEAD manifests/v', 'HEAD manifests/v'], 'each later start: one HEAD, no manifest body')

    await pushImage(reg.url, 'tags/single', 'v', v2)
    requests.length = 0
    const moved = await puller.resolveTag(ref, undefined, first)
    t.same(moved, { tag: v2.manifestDigest, digest: v2.manifestDigest }, 'the tag moved: the new image')
    t.same(requests, ['HEAD manifests/v', 'GET manifests/v'], 'a HEAD that names another digest, then the manifest fetched and verified')
  })

  await t.test('multi-platform tag: one HEAD instead of the index and the platform manifest', async t => {
    const { puller, requests } = await counted(t)
    const ref = `${reg.host}/tags/multi:v`
    const first = await puller.resolveTag(ref)
    t.same(first, { tag: indexDigest, digest: v1.manifestDigest }, 'the index digest is what the tag names')
    t.same(requests, ['GET manifests/v', `GET manifests/${v1.manifestDigest}`])
    requests.length = 0
    t.same(await puller.resolveTag(ref, undefined, first), first)
    t.same(requests, ['HEAD manifests/v'])

    // The tag now names v2's single manifest: the HEAD's digest differs from the index seen before.
    await pushImage(reg.url, 'tags/multi', 'v', v2)
    requests.length = 0
    t.same(await puller.resolveTag(ref, undefined, first), { tag: v2.manifestDigest, digest: v2.manifestDigest })
    t.same(requests, ['HEAD manifests/v', 'GET manifests/v'])
  })

  await t.test('a HEAD with no usable digest, or refused, falls back to the GET', async t => {
    for (const mode of ['no-digest', 'bad-digest', '405'] as const) {
      const { puller, requests } = await counted(t, () => mode)
      const ref = `${reg.host}/tags/single:v`
      const stale = { tag: v1.manifestDigest, digest: v1.manifestDigest }
      t.same(await puller.resolveTag(ref, undefined, stale), { tag: v2.manifestDigest, digest: v2.manifestDigest }, `${mode}: the image the tag names now`)
      t.same(requests, ['HEAD manifests/v', 'GET manifests/v'], `${mode}: then the GET`)
    }
  })

  await t.test('a registry that is down fails the resolution (the caller falls back), never answers the old digest', async t => {
    const down = await startRegistry()
    t.teardown(down.stop) // stopped below on purpose; this one only covers a failure before that
    await pushImage(down.url, 'tags/single', 'v', v1)
    const { puller, requests } = await counted(t)
    const ref = `${down.host}/tags/single:v`
    const first = await puller.resolveTag(ref)
    await down.stop()
    requests.length = 0
    await t.rejects(puller.resolveTag(ref, undefined, first), { name: 'RegistryError' })
    t.same(requests, ['HEAD manifests/v'], 'no GET after a HEAD that could not reach the registry')
  })

  await t.test('a digest reference asks nothing', async t => {
    const { puller, requests } = await counted(t)
    const d = v1.manifestDigest
    t.same(await puller.resolveTag(`${reg.host}/tags/single@${d}`), { tag: d, digest: d })
    t.same(requests, [])
  })
})

t.test('lookup sees every change of index.json: pulls, removals, an edit in place', { skip: existsSync(REGISTRY_BIN) ? false : 'needs docker-registry' }, async t => {
  const reg = await startRegistry()
  t.teardown(reg.stop)
  const v1 = await buildImage()
  const v2 = await buildImage({ extraLayerSizes: [64] })
  await pushImage(reg.url, 'idx/app', 'v', v1)
  const { puller, store } = await counted(t)
  const ref = `${reg.host}/idx/app:v`
  t.equal(await puller.lookup(ref), undefined, 'nothing pulled yet')
  await puller.pull(ref)
  t.equal((await puller.lookup(ref))?.digest, v1.manifestDigest)
  t.equal((await puller.lookup(ref))?.digest, v1.manifestDigest, 'again, unchanged')
  await pushImage(reg.url, 'idx/app', 'v', v2)
  await puller.pull(ref)
  t.equal((await puller.lookup(ref))?.digest, v2.manifestDigest, 'a pull that moved the tag')
  // Edited in place (same inode), as a person might: the digest back to v1's.
  const path = join(store.root, 'index.json')
  await writeFile(path, (await readFile(path, 'utf8')).replace(v2.manifestDigest.slice(7), v1.manifestDigest.slice(7)))
  t.equal((await puller.lookup(ref))?.digest, v1.manifestDigest, 'an edit in place')
  t.ok(await puller.remove(ref))
  t.equal(await puller.lookup(ref), undefined, 'removed')
  await rm(path)
  t.equal(await puller.lookup(ref), undefined, 'no index.json at all')
})
