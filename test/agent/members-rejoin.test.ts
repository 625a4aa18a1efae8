// The honest case of issue #21 finding 4, as a new user would run it: on a
// 3-voter cluster x/y/z, z leaves and rejoins through x with the token. All
// members admit it again (none keeps it revoked), `object put` from z works,
// and after kill -9 of x, y and z still elect a leader. Real agent processes.
import t from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Cluster, seedAddr, waitFor, type AgentProcess } from '../helpers/harness.js'

const stateOn = async (a: AgentProcess, id: string): Promise<string | undefined> => (await a.status())?.members.find(m => m.id === id)?.state

async function clusterFile (a: AgentProcess): Promise<{ evicted?: string[], revoked?: string[] }> {
  return JSON.parse(await readFile(join(a.dataDir, 'cluster.json'), 'utf8'))
}

t.test('a member that left and rejoined through one member is admitted by all', async t => {
  const cluster = await Cluster.create()
  t.teardown(async () => { await cluster.destroy() })
  // Formed by hand for generous start-up timeouts: this runs beside other suites on a loaded machine.
  const x = await cluster.add('x')
  await x.start(['init'], 120_000)
  const y = await cluster.add('y')
  await y.start(['join', seedAddr(x, 'tcp'), '--token', x.ready!.token], 120_000)
  const z = await cluster.add('z')
  await z.start(['join', seedAddr(x, 'tcp'), '--token', x.ready!.token], 120_000)
  const voters = await waitFor(async () => {
    const s = await x.status()
    return s !== undefined && s.leader !== null && s.members.filter(m => m.role === 'server' && m.state === 'alive').length === 3
  }, 90_000, 500)
  t.ok(voters >= 0, 'three voters and a leader')

  await t.test('z leaves and rejoins through x with the token: all admit it, and the cluster survives x dying', async t => {
    const r = await z.cli(['leave'])
    t.equal(r.code, 0, 'leave exits 0')
    t.equal(await z.exited, 0, 'z stops cleanly')
    const left = await waitFor(async () => await stateOn(x, z.id) === 'left' && await stateOn(y, z.id) === 'left', 30_000)
    t.ok(left >= 0, 'x and y see z left')
    const token = (JSON.parse((await x.cli(['token', '--json'])).stdout) as { token: string }).token
    await z.start(['join', seedAddr(x, 'tcp'), '--token', token], 60_000)
    const back = await waitFor(async () => {
      for (const a of [x, y, z]) {
        const s = await a.status()
        if (s === undefined || s.members.filter(m => [x.id, y.id, z.id].includes(m.id) && m.state === 'alive').length !== 3) return false
      }
      const s = await x.status()
      return s?.members.find(m => m.id === z.id)?.role === 'server'
    }, 90_000, 500)
    t.ok(back >= 0, 'all three alive again, z a voter again')
    const f = await clusterFile(y)
    t.notOk((f.evicted ?? []).includes(z.id), 'y holds nothing against z')
    t.equal(f.revoked, undefined, 'no revoked list any more')
    const file = join(cluster.root, 'z-object.bin')
    await writeFile(file, 'hello from z')
    const put = await z.cli(['object', 'put', file, '--json'], 60_000)
    t.equal(put.code, 0, `object put from z works (${put.stderr.trim()})`)
    await x.kill9()
    const leader = await waitFor(async () => {
      for (const a of [y, z]) {
        const s = await a.status()
        if (s?.leader === null || s?.leader === undefined || s.leader === x.id) return false
      }
      return true
    }, 60_000, 500)
    t.ok(leader >= 0, `y and z elect a leader without x (after ${leader} ms)`)
  })
})
