// Objects through real agents: put on A with K=2, kill -9 A, get on a node
// that holds no replica verifies — and finds the holders through the
// object's record in the Raft state (it asks exactly the recorded replicas),
// falling back to live members only when the record is unusable.
import t from 'tap'
import { randomBytes, createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Cluster, waitFor } from '../helpers/harness.js'
import { RAFT_TOML, formVoters } from '../../scenarios/_raft.js'

interface PutJson { id: string, size: number, replicas: string[] }
interface GetJson { id: string, size: number, bytesFromPeers: number, bytesLocal: number, locatedBy: string, asked: string[] }

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

t.test('object put K=2, origin killed, get on a non-holder uses the Raft record', async t => {
  // Four voters: A dies and three keep quorum; with K=2 one of B, C, D holds no replica.
  const cluster = await Cluster.create(RAFT_TOML(4))
  t.teardown(async () => { await cluster.destroy() })
  const agents = await formVoters(cluster, 4)
  const a = agents[0]!
  const data = randomBytes(3 * 1024 * 1024 + 12345)
  const other = randomBytes(1024 * 1024 + 7)
  const puts: PutJson[] = []
  for (const [name, bytes] of [['obj.bin', data], ['other.bin', other]] as const) {
    const file = join(cluster.root, name)
    await writeFile(file, bytes)
    const put = await a.cli(['object', 'put', file, '--replicas', '2', '--json'])
    t.equal(put.code, 0, `put ${name} exits 0 ${put.stderr.trim()}`)
    const r = JSON.parse(put.stdout) as PutJson
    t.equal(r.replicas.length, 2, `${name}: two peers took a replica`)
    puts.push(r)
  }
  // More copies than there are peers: stored all the same, with a warning saying how many were made.
  const over = await a.cli(['object', 'put', join(cluster.root, 'other.bin'), '--replicas', '5'])
  t.equal(over.code, 0, 'put with --replicas 5 on 3 peers exits 0')
  t.equal(over.stdout.trim(), puts[1]!.id, 'and prints the id alone')
  t.match(over.stderr, /warning: sha256:[0-9a-f]{64} has 3 of the 5 peer copies asked \(no other member could take one\); add members or lower --replicas/)
  const dirPut = await a.cli(['object', 'put', cluster.root])
  t.equal(dirPut.code, 1, 'put of a directory exits 1')
  t.match(dirPut.stderr, `object put: ${cluster.root} is a directory; give one file`)
  const [main, second] = puts as [PutJson, PutJson]
  t.match(main.id, /^sha256:[0-9a-f]{64}$/, 'prints an id')
  const nonHolder = agents.slice(1).find(x => !main.replicas.includes(x.id))!
  t.ok(nonHolder !== undefined, `a node without a replica: ${nonHolder.name}`)

  // The second object's record is made unusable: it names only A, which is about to die.
  const broken = JSON.stringify({ size: second.size, chunks: 1, replicas: [a.id] })
  const kvPut = await nonHolder.cli(['kv', 'put', `objects/${second.id}`, broken])
  t.equal(kvPut.code, 0, `kv put exits 0 ${kvPut.stderr.trim()}`)

  await a.kill9()
  await waitFor(async () => (await nonHolder.status())?.members.find(m => m.id === a.id)?.state === 'dead', 20_000)

  const dest = join(cluster.root, 'out.bin')
  const get = await nonHolder.cli(['object', 'get', main.id, dest, '--json'], 60_000)
  t.equal(get.code, 0, `get on ${nonHolder.name} exits 0 ${get.stderr.trim()}`)
  const g = JSON.parse(get.stdout) as GetJson
  t.equal(g.locatedBy, 'raft', 'the holders came from the object\'s record in the Raft state')
  t.same([...g.asked].sort(), [...main.replicas].sort(), 'exactly the recorded replicas were asked (A is dead, no other member)')
  t.ok(g.bytesFromPeers > 0, `chunks came from peers (${get.stdout.trim()})`)
  t.equal(sha(await readFile(dest)), sha(data), 'same bytes')

  const dest2 = join(cluster.root, 'out2.bin')
  const get2 = await nonHolder.cli(['object', 'get', second.id, dest2, '--json'], 60_000)
  t.equal(get2.code, 0, `get of the object with an unusable record exits 0 ${get2.stderr.trim()}`)
  t.equal((JSON.parse(get2.stdout) as GetJson).locatedBy, 'members', 'no live holder in the record: live members were asked instead')
  t.equal(sha(await readFile(dest2)), sha(other), 'same bytes')
})
