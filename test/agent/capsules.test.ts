// Issue "Capsules end to end": real agents, runc and a real registry.
import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { join } from 'node:path'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { Cluster, waitFor, untilStopped, type AgentProcess } from '../helpers/harness.js'
import { RAFT_TOML, agreedLeader } from '../../scenarios/_raft.js'
import { buildImage, pushImage, startRegistry, REGISTRY_BIN } from '../helpers/registry.js'

const run = promisify(execFile)
interface Ps { name: string, image: string, node: string | null, state: string, reason: string | null, exitCode: number | null, restarts: number }

async function ps (a: AgentProcess): Promise<Ps[]> {
  const r = await a.cli(['ps', '--json'], 15_000)
  if (r.code !== 0) return []
  return JSON.parse(r.stdout) as Ps[]
}

const haveRunc = existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc')
const isRoot = process.getuid?.() === 0

t.test('capsules run, place, heal and clean up', { skip: !haveRunc || !isRoot || !existsSync(REGISTRY_BIN) ? 'needs root, runc and docker-registry (.ci/run installs them)' : false }, async t => {
  const registry = await startRegistry()
  t.teardown(async () => { await registry.stop() })
  const img = await buildImage()
  await pushImage(registry.url, 'demo/busybox', '1', img)
  const IMAGE = `${registry.host}/demo/busybox:1`

  // Three voters (one may die without losing quorum) and one client; labels for selectors.
  const cluster = await Cluster.create(RAFT_TOML(3))
  t.teardown(async () => { await cluster.destroy() })
  const a0 = await cluster.add('a0', '[labels]\nzone = "eu"\n')
  await a0.start(['init'])
  const seed = a0.ready!.node.addrs.find(a => a.includes('/quic-v1'))!
  const a1 = await cluster.add('a1', '[labels]\nzone = "eu"\n')
  await a1.start(['join', seed, '--token', a0.ready!.token])
  const a2 = await cluster.add('a2', '[labels]\nzone = "us"\n')
  await a2.start(['join', seed, '--token', a0.ready!.token])
  const a3 = await cluster.add('a3', '[labels]\nzone = "us"\n')
  await a3.start(['join', seed, '--token', a0.ready!.token])
  const agents = [a0, a1, a2, a3]
  const byId = (id: string | null): AgentProcess | undefined => agents.find(a => a.id === id)
  const clientReady = await waitFor(async () => {
    const s = await a0.status()
    return s?.members.filter(m => m.role === 'server').length === 3 && s.members.find(m => m.id === a3.id)?.role === 'client'
  }, 60_000)
  t.ok(clientReady >= 0, 'three voters and a3 a client')
  if (clientReady < 0) for (const a of agents) t.comment(a.name, JSON.stringify(await a.status()), a.stderrTail.slice(-40).join('\n'))
  t.ok(await agreedLeader(agents, 30_000), 'every member names the same leader')

  await t.test('run through a client, logs through another agent', async t => {
    const r = await a3.cli(['run', IMAGE, '--network', 'none', '--name', 'hello', '--memory', '64M', '--', '/bin/sh', '-c', `echo hello-from-capsule; ${untilStopped()}`])
    t.equal(r.code, 0, `run exits 0 (${r.stderr.trim()})`)
    t.equal(r.stdout.trim(), 'hello', 'prints the capsule name')
    let row: Ps | undefined
    const running = await waitFor(async () => { row = (await ps(a3)).find(x => x.name === 'hello'); return row?.state === 'running' }, 90_000, 500)
    t.ok(running >= 0, `running (last seen ${JSON.stringify(row)})`)
    const host = byId(row?.node ?? null)
    t.ok(host, 'placed on a member')
    const other = agents.find(a => a !== host && a !== a3) ?? a3
    let logs = ''
    const got = await waitFor(async () => { const l = await other.cli(['logs', 'hello']); logs = l.stdout; return l.stdout.includes('hello-from-capsule') }, 30_000, 500)
    t.ok(got >= 0, `logs through ${other.name} show the output (${logs.trim().slice(0, 80)})`)
  })

  await t.test('replicas, selectors and an impossible request', async t => {
    const r = await a0.cli(['run', IMAGE, '--network', 'none', '--name', 'web', '--replicas', '3', '--cpu', '0.1', '--memory', '16M', '--strategy', 'spread', '--', '/bin/sh', '-c', untilStopped()])
    t.equal(r.code, 0)
    const spread = await waitFor(async () => {
      const rows = (await ps(a0)).filter(x => x.name.startsWith('web-'))
      return rows.length === 3 && rows.every(x => x.node !== null) && new Set(rows.map(x => x.node)).size === 3
    }, 60_000, 500)
    t.ok(spread >= 0, 'three replicas on three different nodes')
    const eu = await a0.cli(['run', IMAGE, '--network', 'none', '--name', 'eu-only', '--on', 'zone=eu', '--memory', '16M', '--', '/bin/sh', '-c', untilStopped()])
    t.equal(eu.code, 0)
    let row: Ps | undefined
    await waitFor(async () => { row = (await ps(a0)).find(x => x.name === 'eu-only'); return row?.node !== null && row?.node !== undefined }, 30_000, 500)
    t.ok(row?.node === a0.id || row?.node === a1.id, '--on zone=eu lands on an eu node')
    const big = await a0.cli(['run', IMAGE, '--network', 'none', '--name', 'too-big', '--cpu', '1000', '--', '/bin/true'])
    t.equal(big.code, 1, 'run of an impossible request exits 1')
    t.match(big.stderr, /no node has 1000 CPUs free/, 'and says why')
    await waitFor(async () => { row = (await ps(a0)).find(x => x.name === 'too-big'); return (row?.reason ?? '').includes('CPUs') }, 15_000, 500)
    t.equal(row?.state, 'pending', 'an impossible request stays pending')
    t.match(row?.reason, /no node has 1000 CPUs free/, 'with the reason shown in ps')
    for (const n of ['web', 'eu-only', 'too-big']) {
      const rm = await a0.cli(['rm', n])
      t.equal(rm.code, 0, `rm ${n} ${rm.stderr.trim()}`)
    }
  })

  await t.test('on-failure restarts with back-off; stop and rm clean up on the node', async t => {
    const r = await a0.cli(['run', IMAGE, '--network', 'none', '--name', 'crashy', '--restart', 'on-failure', '--memory', '16M', '--', '/bin/sh', '-c', 'echo boom; exit 3'])
    t.equal(r.code, 0)
    let row: Ps | undefined
    const restarted = await waitFor(async () => { row = (await ps(a0)).find(x => x.name === 'crashy'); return (row?.restarts ?? 0) >= 2 }, 60_000, 500)
    t.ok(restarted >= 0, `restarted at least twice (${JSON.stringify(row)})`)
    t.equal(row?.exitCode, 3, 'the exit code is reported')
    t.equal((await a0.cli(['rm', 'crashy'])).code, 0)

    let hello: Ps | undefined = (await ps(a0)).find(x => x.name === 'hello')
    const host = byId(hello?.node ?? null)!
    t.equal((await a0.cli(['stop', 'hello'])).code, 0, 'stop exits 0')
    const exited = await waitFor(async () => { hello = (await ps(a0)).find(x => x.name === 'hello'); return hello?.state === 'exited' }, 30_000, 500)
    t.ok(exited >= 0, 'stopped capsule shows exited')
    t.equal((await a0.cli(['rm', 'hello'])).code, 0, 'rm exits 0')
    const stateRoot = join(host.dataDir, 'runtime', 'runc-state')
    const clean = await waitFor(async () => {
      const out = await run('runc', ['--root', stateRoot, 'list', '-q']).then(r => r.stdout, () => '')
      return !out.includes('hello')
    }, 30_000, 500)
    t.ok(clean >= 0, 'nothing of it is left in the runtime on its node')
    t.notOk((await ps(a0)).some(x => x.name === 'hello'), 'gone from ps')
  })

  await t.test('stacks: up in depends_on order, down removes', async t => {
    const file = join(cluster.root, 'stack.toml')
    await writeFile(file, `[capsules.db]\nimage = "${IMAGE}"\nargs = ["/bin/sh", "-c", ${JSON.stringify(untilStopped())}]\nmemory = "16M"\nnetwork = "none"\n\n[capsules.app]\nimage = "${IMAGE}"\nargs = ["/bin/sh", "-c", ${JSON.stringify(untilStopped())}]\nmemory = "16M"\nnetwork = "none"\ndepends_on = ["db"]\n`)
    const up = await a0.cli(['up', '-f', file], 120_000)
    t.equal(up.code, 0, `up exits 0 ${up.stderr.trim()}`)
    t.same(up.stdout.trim().split('\n'), ['plan for stack stack: 2 to add, 0 to change, 0 to remove', '  + db', '  + app', 'db running', 'app running'], 'the plan, then dependencies first, each waited for')
    const down = await a0.cli(['down', '-f', file])
    t.equal(down.code, 0, 'down exits 0')
    t.same(down.stdout.trim().split('\n'), ['app removed', 'db removed'], 'dependents removed first')
    t.notOk((await ps(a0)).some(x => x.name === 'db' || x.name === 'app'), 'gone from ps')
  })

  await t.test('kill -9 the node running a capsule: it runs elsewhere', async t => {
    const r = await a0.cli(['run', IMAGE, '--network', 'none', '--name', 'survivor', '--memory', '16M', '--', '/bin/sh', '-c', untilStopped()])
    t.equal(r.code, 0)
    let row: Ps | undefined
    // Make sure it is on a node we may kill: not the only voter left standing matters less than being a different process.
    await waitFor(async () => { row = (await ps(a0)).find(x => x.name === 'survivor'); return row?.state === 'running' }, 60_000, 500)
    const host = byId(row?.node ?? null)
    t.ok(host, 'running somewhere')
    if (host === undefined) return
    const watcher = agents.find(a => a !== host)!
    await host.kill9()
    // suspicion bound (a few s with these timings) + dead grace (5 s) + start
    const moved = await waitFor(async () => {
      row = (await ps(watcher)).find(x => x.name === 'survivor')
      return row?.state === 'running' && row.node !== host.id
    }, 60_000, 500)
    t.ok(moved >= 0, `running on another node after the kill (${JSON.stringify(row)})`)
  })
})
