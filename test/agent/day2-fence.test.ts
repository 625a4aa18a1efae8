// Issue 24, lost nodes: kill -9 of an agent whose capsule is set to stop
// after a 5 s grace when cut off: the capsule is stopped (by its watchdog,
// which outlives the agent) by the time its replacement is placed; a capsule
// with the default policy keeps running meanwhile (the edge default).
// Two real agents, real runc.
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Cluster, waitFor, untilStopped, type AgentProcess } from '../helpers/harness.js'
import { RAFT_TOML, apiOf } from '../../scenarios/_raft.js'
import { replaceAfterMs } from '../../agent/scheduler/scheduler.js'
import { CapsuleSpecSchema } from '../../agent/scheduler/spec.js'

const run = promisify(execFile)
const IMAGE = 'bolt.local/busybox:demo'
const ok = (existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc')) && process.getuid?.() === 0 && existsSync('/bin/busybox')

interface Ps { name: string, node: string | null, state: string }

async function runcStatus (a: AgentProcess, name: string): Promise<string> {
  const r = await run('runc', ['--root', join(a.dataDir, 'runtime', 'runc-state'), 'state', name]).catch(() => ({ stdout: '{"status":"gone"}' }))
  return (JSON.parse(r.stdout) as { status: string }).status
}

t.test('replacement waits for the fencing grace', async t => {
  const spec = (o: object): ReturnType<typeof CapsuleSpecSchema.parse> => CapsuleSpecSchema.parse({ name: 'x', image: 'r/x:1', ...o })
  t.equal(replaceAfterMs(spec({}), 30_000), 30_000, 'keep running: the dead-node grace')
  t.equal(replaceAfterMs(spec({ disconnect: { stopAfterMs: 5000 } }), 3000), 7000, 'stop after 5 s: after that grace and the margin')
  t.equal(replaceAfterMs(spec({ disconnect: { stopAfterMs: 5000 } }), 30_000), 30_000, 'never sooner than the dead-node grace')
  t.notOk(CapsuleSpecSchema.safeParse({ name: 'x', image: 'r/x:1', disconnect: { stopAfterMs: 10 } }).success, 'a grace under 1 s is refused')
})

t.test('kill -9 of an agent: a fenced capsule stops before its replacement is placed', { skip: ok ? false : 'needs root, runc and busybox-static', timeout: 600_000 }, async t => {
  const cluster = await Cluster.create(RAFT_TOML(1))
  t.teardown(async () => { await cluster.destroy() })
  const a0 = await cluster.add('k0')
  await a0.start(['init'])
  const a1 = await cluster.add('k1')
  await a1.start(['join', a0.ready!.node.addrs.find(x => x.includes('/quic-v1'))!, '--token', a0.ready!.token])
  t.ok(await waitFor(async () => (await a0.status())?.members.filter(m => m.state === 'alive').length === 2, 60_000, 500) >= 0, 'two members')
  const api = await apiOf(a0)
  const ps = async (): Promise<Ps[]> => await (await fetch(`${api.url}/v1/capsules`, { headers: { authorization: `Bearer ${api.token}` } })).json() as Ps[]

  const bad = await a0.cli(['run', IMAGE, '--name', 'bad', '--stop-on-disconnect', '10ms', '--', '/bin/true'])
  t.equal(bad.code, 2, `--stop-on-disconnect 10ms is bad usage (${bad.stderr.trim()})`)
  t.equal((await a0.cli(['node', 'eligibility', 'k0', 'disable'])).code, 0)
  for (const [name, extra] of [['fenced', ['--stop-on-disconnect', '5s']], ['kept', []]] as const) {
    const r = await a0.cli(['run', IMAGE, '--name', name, '--network', 'none', '--memory', '16M', '--cpu', '0.05', ...extra, '--', '/bin/sh', '-c', untilStopped()], 60_000)
    t.equal(r.code, 0, `run ${name} (${r.stderr.trim()})`)
  }
  t.ok(await waitFor(async () => (await ps()).filter(r => r.node === a1.id && r.state === 'running').length === 2, 60_000, 500) >= 0, 'both run on k1')
  t.equal(await runcStatus(a1, 'fenced.g1'), 'running')
  t.equal((await a0.cli(['node', 'eligibility', 'k0', 'enable'])).code, 0)

  await a1.kill9()
  const seen: Record<string, { stoppedAt?: number, placedAt?: number, oldAtPlacement?: string }> = { fenced: {}, kept: {} }
  let sample = 0
  const done = await waitFor(async () => {
    sample++
    const rows = await ps()
    for (const name of ['fenced', 'kept']) {
      const s = seen[name]!
      const status = await runcStatus(a1, `${name}.g1`)
      if (status !== 'running' && s.stoppedAt === undefined) s.stoppedAt = sample
      if (rows.find(r => r.name === name)?.node === a0.id && s.placedAt === undefined) { s.placedAt = sample; s.oldAtPlacement = status }
    }
    return seen.fenced!.placedAt !== undefined && seen.kept!.placedAt !== undefined
  }, 120_000, 100)
  t.ok(done >= 0, 'both are placed on k0 after k1 is dead')
  const f = seen.fenced!
  t.ok(f.stoppedAt !== undefined && f.placedAt !== undefined && f.stoppedAt < f.placedAt, `fenced: stopped on k1 (sample ${f.stoppedAt ?? '-'}) before its replacement was placed (sample ${f.placedAt ?? '-'})`)
  t.ok(f.oldAtPlacement === 'stopped' || f.oldAtPlacement === 'gone', `the old copy is not running when the replacement is placed (${f.oldAtPlacement ?? '-'})`)
  t.equal(seen.kept!.oldAtPlacement, 'running', 'kept (the default): its copy on the cut-off node was still running')
  t.ok(await waitFor(async () => (await ps()).filter(r => r.node === a0.id && r.state === 'running').length === 2, 60_000, 500) >= 0, 'both run on k0')
})
