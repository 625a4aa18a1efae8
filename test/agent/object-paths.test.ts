import t from 'tap'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { checkObjectDest, checkObjectSource } from '../../agent/object-paths.js'

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
