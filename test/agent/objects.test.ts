// Objects through real agents: put on A with K=2, kill -9 A, get on C verifies.
import t from 'tap'
import { randomBytes, createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Cluster, waitFor } from '../../scenarios/harness.js'
import { RAFT_TOML, formVoters } from '../../scenarios/_raft.js'

t.test('object put K=2, origin killed, get elsewhere', async t => {
  const cluster = await Cluster.create(RAFT_TOML(3))
  t.teardown(async () => { await cluster.destroy() })
  const [a, b, c] = await formVoters(cluster, 3)
  const file = join(cluster.root, 'obj.bin')
  const data = randomBytes(3 * 1024 * 1024 + 12345)
  await writeFile(file, data)
  const put = await a!.cli(['object', 'put', file, '--replicas', '2'])
  t.equal(put.code, 0, `put exits 0 ${put.stderr.trim()}`)
  const id = put.stdout.trim()
  t.match(id, /^sha256:[0-9a-f]{64}$|^[0-9a-z]+/, 'prints an id')
  await a!.kill9()
  await waitFor(async () => (await b!.status())?.members.find(m => m.id === a!.id)?.state === 'dead', 20_000)
  const dest = join(cluster.root, 'out.bin')
  const get = await c!.cli(['object', 'get', id, dest], 60_000)
  t.equal(get.code, 0, `get on another node exits 0 ${get.stderr.trim()}`)
  const back = await readFile(dest)
  t.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(data).digest('hex'), 'same bytes')
})
