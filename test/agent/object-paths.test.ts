import t from 'tap'
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { checkDestInRoot, checkObjectDest, checkObjectId, checkObjectSource } from '../../agent/object-paths.js'

t.test('object put and get paths are checked before any work, with one clear line', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-objpaths-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const file = join(dir, 'f.bin')
  await writeFile(file, 'x')
  await mkdir(join(dir, 'sub'))

  await t.resolves(checkObjectSource(file))
  await t.rejects(checkObjectSource(join(dir, 'missing')), { status: 400, message: `object put: ${join(dir, 'missing')} does not exist` })
  await t.rejects(checkObjectSource(join(dir, 'sub')), { status: 400, message: `object put: ${join(dir, 'sub')} is a directory; give one file` })
  await t.rejects(checkObjectSource('/dev/null'), { status: 400, message: 'object put: /dev/null is not a regular file; give one file' })

  await t.resolves(checkObjectDest(join(dir, 'new.bin')), 'a new file in a directory that exists')
  await t.resolves(checkObjectDest(file), 'an existing file is replaced')
  await t.rejects(checkObjectDest(join(dir, 'sub')), { status: 400, message: `object get: ${join(dir, 'sub')} is a directory; give the path of the file to write` })
  await t.rejects(checkObjectDest(join(dir, 'no', 'such', 'out')), { status: 400, message: `object get: the directory ${join(dir, 'no', 'such')} does not exist` })
  await t.rejects(checkObjectDest(join(file, 'out')), { status: 400, message: `object get: ${file} is not a directory` })
})

t.test('the agent writes an API caller\'s dest only under [objects] dest_root', async t => {
  const dir = await realpath(await mkdtemp(join(tmpdir(), 'bolt-objroot-')))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const root = join(dir, 'root')
  const outside = join(dir, 'outside')
  await mkdir(join(root, 'sub'), { recursive: true })
  await mkdir(outside)
  await symlink(outside, join(root, 'escape'))

  t.equal(await checkDestInRoot(join(root, 'a.bin'), root), join(root, 'a.bin'), 'inside the root')
  t.equal(await checkDestInRoot(join(root, 'sub', 'a.bin'), root), join(root, 'sub', 'a.bin'), 'in a directory under it')
  await t.rejects(checkDestInRoot(join(outside, 'a.bin'), root), { status: 403, message: `object get: ${join(outside, 'a.bin')} is outside [objects] dest_root (${root}); the agent writes nowhere else for API callers (use \`bolt-agent object get ID DEST\`, which writes DEST as the user who runs it)` })
  await t.rejects(checkDestInRoot('/etc/cron.d/x', root), { name: 'ApiError', status: 403 }, 'a system path')
  await t.rejects(checkDestInRoot(join(root, 'escape', 'a.bin'), root), { status: 403, message: /is outside \[objects\] dest_root/ }, 'through a symlink inside the root that points out of it')
  await t.rejects(checkDestInRoot(join(root, '..', 'outside', 'a.bin'), root), { name: 'ApiError', status: 403 }, 'through ..')
  await t.rejects(checkDestInRoot(join(root + '-sibling', 'a.bin'), root), { name: 'ApiError', status: 400 }, 'a sibling with the root as prefix is not inside (and does not exist)')
  await t.rejects(checkDestInRoot(join(root, 'a.bin'), undefined), { status: 403, message: /only under \[objects\] dest_root, which is not set/ }, 'no root configured: never')

  t.doesNotThrow(() => { checkObjectId(`sha256:${'a'.repeat(64)}`) })
  for (const bad of ['../../etc/passwd', `sha256:${'a'.repeat(63)}`, `sha256/${'a'.repeat(64)}`, '']) t.throws(() => { checkObjectId(bad) }, { name: 'ApiError', status: 400 }, `id ${JSON.stringify(bad)} refused`)
})
