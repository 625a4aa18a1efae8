// One agent per data dir: a second one started on a running agent's data dir
// is refused, and on its way out leaves the running agent untouched — its
// api.json stays, its clients keep working, and it keeps serving (issue 22).
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { AgentProcess, Cluster } from '../helpers/harness.js'

t.test('a refused second agent leaves the running one and its api.json alone', async t => {
  const cluster = await Cluster.create()
  t.teardown(async () => { await cluster.destroy() })
  const first = await cluster.add('a0')
  await first.start(['init'], 120_000)
  const apiBefore = await readFile(join(first.dataDir, 'api.json'), 'utf8')
  t.equal((JSON.parse(apiBefore) as { pid: number }).pid, first.proc?.pid, 'api.json names the running agent')

  for (const args of [['start'], ['init']]) {
    const second = new AgentProcess('a0-again', first.dataDir, first.configFile)
    const err = await second.start(args, 120_000).then(() => undefined, (e: Error) => e)
    t.teardown(async () => { await second.stop() })
    t.ok(err !== undefined, `${args[0]!}: the second agent does not start`)
    t.match(second.stderrTail.join('\n'), /an agent \(pid \d+\) is already running on /, `${args[0]!}: it says another agent runs there`)
    t.equal(await second.exited, 1, `${args[0]!}: and exits 1`)
    t.equal(await readFile(join(first.dataDir, 'api.json'), 'utf8'), apiBefore, `${args[0]!}: api.json is unchanged`)
  }
  const st = await first.status()
  t.equal(st?.node.id, first.id, 'the first agent still answers its clients')
  const put = await first.cli(['kv', 'put', 'still', 'here'])
  t.equal(put.code, 0, `and still writes (${put.stderr.trim()})`)
})
