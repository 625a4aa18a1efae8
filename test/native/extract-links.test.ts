// A hostile layer must not reach a host file through a link swapped in after
// a directory entry: the deferred directory modes used to be applied with
// chmod by name, which followed the link and turned a host file 4777. Each
// case runs the real ImageStore/extractor against a victim file the test owns.
import t from 'tap'
import { chmod, lstat, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ImageStore, type RootfsMode } from '../../native/image/store.js'
import { makeTar, writeLayout, type TarEntry } from './image-fixture.js'

const ROOTLESS = process.getuid?.() !== 0
const modes: RootfsMode[] = ROOTLESS ? ['copy'] : ['overlay', 'copy']
const VICTIM_MODE = 0o600

interface Attack { name: string, entries: (victimDir: string, victim: string) => TarEntry[] }
const attacks: Attack[] = [
  {
    name: 'a directory, then a symlink to an absolute host path at the same name',
    entries: (_dir, victim) => [
      { path: 'x/', type: 'Directory', mode: 0o4777 },
      { path: 'x', type: 'SymbolicLink', linkpath: victim }
    ]
  },
  {
    name: 'a directory, then a symlink in place of the directory above it',
    entries: (dir) => [
      { path: 'a/', type: 'Directory' },
      { path: 'a/victim/', type: 'Directory', mode: 0o4777 },
      { path: 'a', type: 'SymbolicLink', linkpath: dir }
    ]
  },
  {
    name: 'a directory, then a hard link to a symlink at the same name',
    entries: (_dir, victim) => [
      { path: 'x/', type: 'Directory', mode: 0o4777 },
      { path: 's', type: 'SymbolicLink', linkpath: victim },
      { path: 'x', type: 'Link', linkpath: 's' }
    ]
  }
]

for (const mode of modes) {
  for (const a of attacks) {
    t.test(`${a.name} (${mode}): the host file keeps its mode and the layer is refused`, async t => {
      const parent = await mkdtemp(join(tmpdir(), 'bolt-extract-links-'))
      const victimDir = await mkdtemp(join(tmpdir(), 'bolt-extract-victim-'))
      t.teardown(async () => {
        await rm(parent, { recursive: true, force: true })
        await rm(victimDir, { recursive: true, force: true })
      })
      const victim = join(victimDir, 'victim')
      await writeFile(victim, 'host secret')
      await chmod(victim, VICTIM_MODE)
      const dataDir = join(parent, 'data')
      const img = await writeLayout(join(parent, 'layout'), [makeTar(a.entries(victimDir, victim))])
      const store = new ImageStore(dataDir, mode, ROOTLESS)
      await store.init()
      const err = await store.prepare(img.layoutDir, img.ref).then(() => undefined, (e: Error) => e)
      t.equal(((await lstat(victim)).mode & 0o7777).toString(8), VICTIM_MODE.toString(8), 'host file mode unchanged')
      t.equal(((await lstat(victimDir)).mode & 0o7777).toString(8), '700', 'host dir mode unchanged')
      t.equal(err?.name, 'SymlinkEscapeError', 'prepare fails')
      t.match(err?.message, /replaced it .* with a link or a file: refusing the layer/, 'the error says which entry and why')
      t.same(await readdir(join(dataDir, 'layers')), [], 'no layer kept')
      t.same(await readdir(join(dataDir, 'images')), [], 'no image kept')
      t.same(await readdir(join(dataDir, 'tmp')), [], 'staging cleaned')
    })
  }
}

t.test('a hard link to a relative symlink is re-checked from its own place', async t => {
  const parent = await mkdtemp(join(tmpdir(), 'bolt-extract-links-'))
  t.teardown(async () => { await rm(parent, { recursive: true, force: true }) })
  const dataDir = join(parent, 'data')
  // a/b/s -> ../.. is the root seen from a/b; the same link at /h climbs two levels above it.
  const img = await writeLayout(join(parent, 'layout'), [makeTar([
    { path: 'a/b/s', type: 'SymbolicLink', linkpath: '../..' },
    { path: 'h', type: 'Link', linkpath: 'a/b/s' }
  ])])
  const store = new ImageStore(dataDir, 'copy', ROOTLESS)
  await store.init()
  await t.rejects(store.prepare(img.layoutDir, img.ref), { name: 'SymlinkEscapeError' })
})

t.test('in-root links above a directory entry are fine (merged /usr)', async t => {
  const parent = await mkdtemp(join(tmpdir(), 'bolt-extract-links-'))
  t.teardown(async () => { await rm(parent, { recursive: true, force: true }) })
  const dataDir = join(parent, 'data')
  const img = await writeLayout(join(parent, 'layout'), [
    makeTar([{ path: 'usr/', type: 'Directory' }, { path: 'usr/lib/', type: 'Directory' }, { path: 'lib', type: 'SymbolicLink', linkpath: 'usr/lib' }]),
    makeTar([{ path: 'lib/x/', type: 'Directory', mode: 0o750 }, { path: 'lib/x/f', data: 'f', mode: 0o4755 }])
  ])
  const store = new ImageStore(dataDir, 'copy', ROOTLESS)
  await store.init()
  const prepared = await store.prepare(img.layoutDir, img.ref)
  const rootfs = await store.createRootfs(prepared, join(dataDir, 'c'))
  t.equal(((await lstat(join(rootfs, 'usr/lib/x'))).mode & 0o7777).toString(8), '750')
  t.equal(((await lstat(join(rootfs, 'usr/lib/x/f'))).mode & 0o7777).toString(8), '4755')
})
