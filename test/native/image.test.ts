import t from 'tap'
import { existsSync } from 'node:fs'
import { lstat, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ImageStore, isMountPoint, type RootfsMode } from '../../native/image/store.js'
import { busyboxImage, busyboxLayer, makeTar, writeLayout, type TarEntry } from './image-fixture.js'

async function sandbox (t: { teardown: (fn: () => Promise<void>) => void }): Promise<{ parent: string, dataDir: string }> {
  const parent = await mkdtemp(join(tmpdir(), 'bolt-native-img-'))
  t.teardown(async () => { await rm(parent, { recursive: true, force: true }) })
  return { parent, dataDir: join(parent, 'data') }
}

const ROOTLESS = process.getuid?.() !== 0
const modes: RootfsMode[] = ROOTLESS ? ['copy'] : ['overlay', 'copy']

for (const compression of ['gzip', 'zstd', 'none'] as const) {
  t.test(`busybox image (${compression}) prepares into a rootfs`, async t => {
    const { dataDir } = await sandbox(t)
    const img = await busyboxImage(compression)
    const store = new ImageStore(dataDir, 'copy', ROOTLESS)
    await store.init()
    const prepared = await store.prepare(img.layoutDir, img.ref)
    t.equal(prepared.mode, 'copy')
    const rootfs = await store.createRootfs(prepared, join(dataDir, 'c1'))
    t.ok((await lstat(join(rootfs, 'bin/busybox'))).isFile())
    t.equal(await readlink(join(rootfs, 'bin/sh')), 'busybox')
    t.equal((await lstat(join(rootfs, 'tmp'))).mode & 0o7777, 0o1777)
    const again = await store.prepare(img.layoutDir, img.ref)
    t.same(again, prepared, 'second prepare is served from the cache')
  })
}

for (const mode of modes) {
  t.test(`whiteouts and opaque dirs (${mode})`, async t => {
    const { parent, dataDir } = await sandbox(t)
    const l1 = makeTar([
      { path: 'a/', type: 'Directory' }, { path: 'a/keep', data: 'k' }, { path: 'a/gone', data: 'g' },
      { path: 'o/', type: 'Directory' }, { path: 'o/old', data: 'old' },
      { path: 'x', data: 'x' }
    ])
    const l2 = makeTar([
      { path: 'a/.wh.gone' },
      { path: 'o/', type: 'Directory' }, { path: 'o/.wh..wh..opq' }, { path: 'o/new', data: 'new' },
      { path: '.wh.x' }
    ])
    const img = await writeLayout(join(parent, 'layout'), [l1, l2])
    const store = new ImageStore(dataDir, mode, ROOTLESS)
    await store.init()
    const prepared = await store.prepare(img.layoutDir, img.ref)
    const capsuleDir = join(dataDir, 'c1')
    const rootfs = await store.createRootfs(prepared, capsuleDir)
    t.teardown(async () => { await store.removeRootfs(capsuleDir) })
    t.equal(await readFile(join(rootfs, 'a/keep'), 'utf8'), 'k')
    t.notOk(existsSync(join(rootfs, 'a/gone')), 'whiteout removed a/gone')
    t.notOk(existsSync(join(rootfs, 'x')), 'whiteout removed x')
    t.same((await readdir(join(rootfs, 'o'))).sort(), ['new'], 'opaque dir hides the lower layer')
    if (mode === 'overlay') {
      t.ok(await isMountPoint(rootfs), 'rootfs is an overlay mount')
      await store.removeRootfs(capsuleDir)
      t.notOk(await isMountPoint(rootfs), 'removeRootfs unmounts')
      t.notOk(existsSync(rootfs))
    }
  })
}

interface Hostile { name: string, layers: TarEntry[][], error: string, rootless?: boolean }
const hostile: Hostile[] = [
  { name: '../ path', layers: [[{ path: '../../evil', data: 'x' }]], error: 'PathTraversalError' },
  { name: 'nested ../ path', layers: [[{ path: 'a/../../evil', data: 'x' }]], error: 'PathTraversalError' },
  { name: 'symlink escaping with ..', layers: [[{ path: 'esc', type: 'SymbolicLink', linkpath: '../../../../../tmp' }]], error: 'SymlinkEscapeError' },
  { name: 'absolute symlink climbing above /', layers: [[{ path: 'esc', type: 'SymbolicLink', linkpath: '/../../tmp' }]], error: 'SymlinkEscapeError' },
  { name: 'absolute hard link', layers: [[{ path: 'h', type: 'Link', linkpath: '/etc/passwd' }]], error: 'HardlinkError' },
  { name: 'escaping hard link', layers: [[{ path: 'h', type: 'Link', linkpath: '../../../etc/passwd' }]], error: 'HardlinkError' },
  { name: 'device node when rootless', layers: [[{ path: 'null', type: 'CharacterDevice', devmaj: 1, devmin: 3 }]], error: 'DeviceNodeError', rootless: true }
]

for (const mode of modes) {
  for (const h of hostile) {
    t.test(`rejects ${h.name} (${mode}) and writes nothing outside`, async t => {
      const { parent, dataDir } = await sandbox(t)
      const img = await writeLayout(join(parent, 'layout'), h.layers.map(makeTar))
      const store = new ImageStore(dataDir, h.rootless === true ? 'copy' : mode, h.rootless ?? ROOTLESS)
      await store.init()
      await t.rejects(store.prepare(img.layoutDir, img.ref), { name: h.error })
      t.same((await readdir(parent)).sort(), ['data', 'layout'], 'nothing written next to the data dir')
      t.same(await readdir(join(dataDir, 'layers')), [], 'no layer kept')
      t.same(await readdir(join(dataDir, 'images')), [], 'no image kept')
      t.same(await readdir(join(dataDir, 'tmp')), [], 'staging cleaned')
      t.notOk(existsSync('/tmp/evil') || existsSync(join(tmpdir(), 'evil')))
    })
  }
}

t.test('an absolute symlink is followed inside the rootfs, never on the host', async t => {
  const { parent, dataDir } = await sandbox(t)
  const marker = `bolt-${process.pid}-escape`
  const l1 = makeTar([{ path: 'etc/', type: 'Directory' }, { path: 'hostroot', type: 'SymbolicLink', linkpath: '/' }, { path: 'tmpl', type: 'SymbolicLink', linkpath: '/tmp' }])
  const l2 = makeTar([{ path: `hostroot/etc/${marker}`, data: 'inside' }, { path: `tmpl/${marker}`, data: 'inside' }])
  const img = await writeLayout(join(parent, 'layout'), [l1, l2])
  const store = new ImageStore(dataDir, 'copy', ROOTLESS)
  await store.init()
  const prepared = await store.prepare(img.layoutDir, img.ref)
  const rootfs = await store.createRootfs(prepared, join(dataDir, 'c'))
  t.equal(await readFile(join(rootfs, 'etc', marker), 'utf8'), 'inside')
  t.equal(await readFile(join(rootfs, 'tmp', marker), 'utf8'), 'inside')
  t.notOk(existsSync(`/etc/${marker}`), 'host /etc untouched')
  t.notOk(existsSync(`/tmp/${marker}`), 'host /tmp untouched')
})

for (const mode of modes) {
  t.test(`bad digests are rejected before anything is written (${mode})`, async t => {
    const { parent, dataDir } = await sandbox(t)
    const img = await writeLayout(join(parent, 'layout'), [await busyboxLayer()], { corruptLayer: 0 })
    const store = new ImageStore(dataDir, mode, ROOTLESS)
    await store.init()
    await t.rejects(store.prepare(img.layoutDir, img.ref), { name: 'DigestMismatchError' })
    t.same(await readdir(join(dataDir, 'layers')), [])
    t.same(await readdir(join(dataDir, 'images')), [])
  })
}

t.test('a diff_id that does not match the uncompressed layer is rejected', async t => {
  const { parent, dataDir } = await sandbox(t)
  const img = await writeLayout(join(parent, 'layout'), [makeTar([{ path: 'f', data: 'x' }])])
  // Rewrite the config with a wrong diff_id (and the manifest/index to match).
  const { rewriteDiffId } = await import('./image-fixture-tamper.js')
  await rewriteDiffId(img.layoutDir)
  const store = new ImageStore(dataDir, 'copy', ROOTLESS)
  await store.init()
  await t.rejects(store.prepare(img.layoutDir, img.ref), { name: 'DigestMismatchError' })
  t.same(await readdir(join(dataDir, 'images')), [])
})

t.test('unknown refs and missing layouts give ImageLayoutError', async t => {
  const { parent, dataDir } = await sandbox(t)
  const store = new ImageStore(dataDir, 'copy', ROOTLESS)
  await store.init()
  await t.rejects(store.prepare(join(parent, 'nope'), 'x'), { name: 'ImageLayoutError' })
  const img = await busyboxImage()
  await t.rejects(store.prepare(img.layoutDir, 'alpine:3'), { name: 'ImageLayoutError', message: /alpine:3 is not in/ })
})

t.test('an image index is followed to this platform\'s manifest', async t => {
  const { parent, dataDir } = await sandbox(t)
  const { createHash } = await import('node:crypto')
  const { writeFile } = await import('node:fs/promises')
  const img = await writeLayout(join(parent, 'layout'), [makeTar([{ path: 'hello', data: 'multi-arch' }])], { ref: 'multi:1' })
  const indexPath = join(img.layoutDir, 'index.json')
  const top = JSON.parse(await readFile(indexPath, 'utf8')) as { manifests: Array<Record<string, unknown>> }
  const arch = ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch] ?? process.arch
  const manifest = { ...top.manifests[0], annotations: undefined, platform: { os: 'linux', architecture: arch } }
  const other = { ...manifest, digest: `sha256:${'0'.repeat(64)}`, platform: { os: 'linux', architecture: 's390x-not-this' } }
  const nested = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [other, manifest] })
  const digest = 'sha256:' + createHash('sha256').update(nested).digest('hex')
  await writeFile(join(img.layoutDir, 'blobs', 'sha256', digest.slice(7)), nested)
  await writeFile(indexPath, JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest, size: Buffer.byteLength(nested), annotations: { 'org.opencontainers.image.ref.name': 'multi:1' } }] }))
  const store = new ImageStore(dataDir, 'copy', ROOTLESS)
  await store.init()
  const prepared = await store.prepare(img.layoutDir, 'multi:1')
  t.equal(prepared.id, img.manifestDigest, 'the platform manifest, not the index, is the image id')
  const rootfs = await store.createRootfs(prepared, join(dataDir, 'c'))
  t.equal(await readFile(join(rootfs, 'hello'), 'utf8'), 'multi-arch')
})

t.test('removing an image keeps the layers another image shares', { skip: process.getuid?.() !== 0 ? 'overlay needs root' : false }, async t => {
  const { parent, dataDir } = await sandbox(t)
  const shared = makeTar([{ path: 'shared', data: 's' }])
  const a = await writeLayout(join(parent, 'a'), [shared, makeTar([{ path: 'a', data: 'a' }])], { ref: 'a:1' })
  const b = await writeLayout(join(parent, 'b'), [shared, makeTar([{ path: 'b', data: 'b' }])], { ref: 'b:1' })
  const store = new ImageStore(dataDir, 'overlay', ROOTLESS)
  await store.init()
  const ia = await store.prepare(a.layoutDir, a.ref)
  const ib = await store.prepare(b.layoutDir, b.ref)
  t.equal((await readdir(join(dataDir, 'layers'))).length, 3, 'the shared layer is extracted once')
  t.equal((await store.list()).length, 2)
  t.equal(await store.remove(ia.id), true)
  t.equal((await readdir(join(dataDir, 'layers'))).length, 2, "only a's own layer went")
  const rootfs = await store.createRootfs(ib, join(dataDir, 'c'))
  t.teardown(async () => { await store.removeRootfs(join(dataDir, 'c')) })
  t.equal(await readFile(join(rootfs, 'shared'), 'utf8'), 's')
  t.equal(await store.remove(ia.id), false, 'already gone')
})
