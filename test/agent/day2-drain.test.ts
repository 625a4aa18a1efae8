// Issue 24, nodes: `node eligibility`, `node drain` of a node with 4
// capsules (each runs healthy elsewhere before the drained node's copy
// stops), and `leave` draining first so nothing keeps running under the
// runtime on the node that left. Two real agents, real runc.
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Cluster, waitFor, untilStopped, type AgentProcess } from '../helpers/harness.js'
import { RAFT_TOML, apiOf } from '../../scenarios/_raft.js'

const run = promisify(execFile)
const IMAGE = 'bolt.local/busybox:demo'
const ok = (existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc')) && process.getuid?.() === 0 && existsSync('/bin/busybox')

interface Ps { name: string, capsule: string, node: string | null, state: string, health: string | null }

async function runcList (a: AgentProcess): Promise<string[]> {
  const r = await run('runc', ['--root', join(a.dataDir, 'runtime', 'runc-state'), 'list', '-q']).catch(() => ({ stdout: '' }))
  return r.stdout.split('\n').map(s => s.trim()).filter(Boolean).sort()
}

t.test('node eligibility, drain and leave', { skip: ok ? false : 'needs root, runc and busybox-static', timeout: 600_000 }, async t => {
  const cluster = await Cluster.create(RAFT_TOML(1))
  t.teardown(async () => { await cluster.destroy() })
  const a0 = await cluster.add('n0')
  await a0.start(['init'], 90_000)
  const a1 = await cluster.add('n1')
  await a1.start(['join', a0.ready!.node.addrs.find(x => x.includes('/quic-v1'))!, '--token', a0.ready!.token], 90_000)
  t.ok(await waitFor(async () => (await a0.status())?.members.filter(m => m.state === 'alive').length === 2, 60_000, 500) >= 0, 'two members')
  const api = await apiOf(a0)
  const ps = async (): Promise<Ps[]> => {
    const res = await fetch(`${api.url}/v1/capsules`, { headers: { authorization: `Bearer ${api.token}` } })
    return await res.json() as Ps[]
  }
  const runOn = async (names: string[]): Promise<void> => {
    for (const n of names) {
      const r = await a0.cli(['run', IMAGE, '--name', n, '--network', 'none', '--memory', '16M', '--cpu', '0.05', '--check', 'exec:true', '--check-interval', '300ms', '--', '/bin/sh', '-c', untilStopped()], 60_000)
      t.equal(r.code, 0, `run ${n} (${r.stderr.trim()})`)
    }
  }

  const dis = await a0.cli(['node', 'eligibility', 'n0', 'disable'])
  t.equal(dis.code, 0, `node eligibility n0 disable (${dis.stderr.trim()})`)
  t.match(dis.stdout, /n0 takes no new capsules/)
  t.equal((await a0.cli(['node', 'eligibility', 'n0', 'maybe'])).code, 2, 'a bad setting is bad usage')
  t.equal((await a0.cli(['node', 'eligibility', 'nope', 'enable'])).code, 1, 'an unknown node: exit 1')
  const caps = ['c1', 'c2', 'c3', 'c4']
  await runOn(caps)
  t.ok(await waitFor(async () => (await ps()).filter(r => r.node === a1.id && r.health === 'healthy').length === 4, 90_000, 500) >= 0, 'all 4 run healthy on n1, n0 being ineligible')
  t.equal((await a0.cli(['node', 'eligibility', 'n0', 'enable'])).code, 0)

  // Watch every instance: when its copy on n1 leaves runc, and when it is first healthy on n0.
  const goneAt = new Map<string, number>()
  const healthyAt = new Map<string, number>()
  let sample = 0
  let watching = true
  const watcher = (async () => {
    while (watching) {
      sample++
      const [rows, onN1] = await Promise.all([ps().catch(() => [] as Ps[]), runcList(a1)])
      for (const r of rows) if (r.node === a0.id && r.health === 'healthy' && !healthyAt.has(r.name)) healthyAt.set(r.name, sample)
      for (const c of caps) if (!onN1.some(n => n.startsWith(`${c}.`)) && !goneAt.has(c)) goneAt.set(c, sample)
      await new Promise(resolve => setTimeout(resolve, 150))
    }
  })()
  const drain = await a0.cli(['node', 'drain', 'n1', '--deadline', '2m'], 180_000)
  t.equal(drain.code, 0, `node drain n1 (${drain.stderr.trim()})`)
  t.match(drain.stdout, /draining n1: 4 instance\(s\) to move/)
  t.match(drain.stdout, /n1 drained; it takes no new capsules/)
  const rows = await ps()
  t.same(rows.filter(r => caps.includes(r.name)).map(r => [r.name, r.node === a0.id, r.state, r.health]), caps.map(c => [c, true, 'running', 'healthy']), 'all 4 run healthy on n0')
  t.ok(await waitFor(async () => (await runcList(a1)).length === 0, 30_000, 300) >= 0, 'nothing left under runc on n1')
  await waitFor(async () => goneAt.size === caps.length, 10_000, 100)
  watching = false
  await watcher
  for (const c of caps) {
    const h = healthyAt.get(c)
    const g = goneAt.get(c)
    t.ok(h !== undefined && g !== undefined && h <= g, `${c}: healthy on n0 (sample ${h ?? '-'}) before its copy on n1 stopped (sample ${g ?? '-'})`)
  }
  const more = await a0.cli(['run', IMAGE, '--name', 'after', '--network', 'none', '--memory', '16M', '--cpu', '0.05', '--', '/bin/sh', '-c', untilStopped()], 60_000)
  t.equal(more.code, 0)
  t.equal((await ps()).find(r => r.name === 'after')?.node, a0.id, 'a drained node takes no new capsule')

  // leave: n1 runs two capsules again, then leaves; they move to n0 and nothing stays on n1.
  t.equal((await a0.cli(['node', 'eligibility', 'n1', 'enable'])).code, 0)
  t.equal((await a0.cli(['node', 'eligibility', 'n0', 'disable'])).code, 0)
  await runOn(['l1', 'l2'])
  const onN1 = await waitFor(async () => (await ps()).filter(r => r.node === a1.id && r.health === 'healthy').length === 2, 90_000, 500)
  t.ok(onN1 >= 0, 'l1, l2 run on n1')
  if (onN1 < 0) t.comment(JSON.stringify(await ps()), a1.stderrTail.slice(-20).join('\n'))
  t.equal((await a0.cli(['node', 'eligibility', 'n0', 'enable'])).code, 0)
  const left = await a1.cli(['leave'])
  t.equal(left.code, 0, `leave (${left.stderr.trim()})`)
  t.ok(await Promise.race([a1.exited.then(() => true), new Promise(resolve => { setTimeout(() => resolve(false), 120_000).unref() })]), 'n1 stopped') // unref: a pending timer would keep this file's process alive for its full 2 min
  t.same(await runcList(a1), [], 'nothing runs under runc on the node that left')
  t.ok(await waitFor(async () => (await ps()).filter(r => ['l1', 'l2'].includes(r.name) && r.node === a0.id && r.state === 'running').length === 2, 60_000, 500) >= 0, 'l1 and l2 run on n0')
})
