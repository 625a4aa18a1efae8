// The data dir is the agent user's alone (issue #21, finding 8): one that
// others may enter is closed to 0700 with a line saying so, one owned by
// another user is refused, and nothing the agent writes is readable by others.
import t from 'tap'
import { chmod, chown, lstat, mkdir, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Cluster } from '../helpers/harness.js'

/** Every path under `dir` (itself included) whose mode lets other users read, write or enter it. */
async function openToOthers (dir: string): Promise<string[]> {
  const found: string[] = []
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p).catch(() => undefined) // removed while we walk: nothing to show
    if (st === undefined || st.isSymbolicLink()) return
    if ((st.mode & 0o007) !== 0) found.push(`${p} ${(st.mode & 0o7777).toString(8)}`)
    if (st.isDirectory()) for (const e of await readdir(p).catch(() => [] as string[])) await walk(join(p, e))
  }
  await walk(dir)
  return found
}

t.test('an agent started on a 0755 data dir sets it to 0700 and writes nothing others can read', async t => {
  const cluster = await Cluster.create()
  t.teardown(async () => { await cluster.destroy() })
  const a = await cluster.add('a0')
  await mkdir(a.dataDir)
  await chmod(a.dataDir, 0o755)
  await a.start(['init'], 60_000)
  t.equal(((await lstat(a.dataDir)).mode & 0o7777).toString(8), '700', 'the data dir is 0700')
  t.ok(a.stderrTail.some(l => l.includes(`the data dir ${a.dataDir} was mode 0755, open to other users; set it to 0700`)), 'one line says so')
  // Raft entries, blobs and object chunks on disk.
  t.equal((await a.cli(['kv', 'put', 'k', 'v'], 30_000)).code, 0, 'kv put')
  const file = join(cluster.root, 'obj')
  await writeFile(file, Buffer.alloc(300_000, 7))
  const put = await a.cli(['object', 'put', file, '--replicas', '1'], 60_000)
  t.equal(put.code, 0, `object put (${put.stderr.trim()})`)
  t.same(await openToOthers(a.dataDir), [], 'while it runs, no file or dir under it is open to other users')
  await a.stop()
  t.same(await openToOthers(a.dataDir), [], 'nor after it stopped')
})

t.test('a data dir owned by another user is refused with one line', { skip: process.getuid?.() !== 0 ? 'chown needs root' : false }, async t => {
  const cluster = await Cluster.create()
  t.teardown(async () => { await cluster.destroy() })
  const a = await cluster.add('a0')
  await mkdir(a.dataDir, { mode: 0o700 })
  await chown(a.dataDir, 65534, 65534)
  const err = await a.start(['init'], 60_000).then(async () => { await a.stop() }, (e: Error) => e)
  t.ok(err, 'the agent does not start')
  if (err === undefined) return
  t.equal(await a.exited, 1, 'exit 1')
  const lines = a.stderrTail.filter(l => l.startsWith('bolt-agent:'))
  t.equal(lines.length, 1, 'one line')
  t.match(lines[0], /the data dir \S+ belongs to uid 65534, not to this agent's user \(uid 0\): chown it to the agent's user or choose another --data/)
  t.same(await readdir(a.dataDir), [], 'and it wrote nothing there')
})
