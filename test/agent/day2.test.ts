// Issue "Day-two operations": `run` that says what happened, logs with
// --tail/--since/-t across replicas, kv delete/list, ps --filter. One real
// agent, real runc, the built-in demo image (no registry needed).
import t from 'tap'
import { existsSync } from 'node:fs'
import { Cluster, waitFor, type AgentProcess } from '../../scenarios/harness.js'
import { RAFT_TOML } from '../../scenarios/_raft.js'

const IMAGE = 'bolt.local/busybox:demo'
const haveRunc = existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc')
const haveBusybox = existsSync('/bin/busybox') || existsSync('/usr/bin/busybox')
const isRoot = process.getuid?.() === 0

interface Ps { name: string, capsule: string, node: string | null, state: string, reason: string | null }
async function ps (a: AgentProcess, ...args: string[]): Promise<Ps[]> {
  const r = await a.cli(['ps', '--json', ...args], 15_000)
  return r.code === 0 ? JSON.parse(r.stdout) as Ps[] : []
}

t.test('day-two operations on one agent', { skip: !haveRunc || !isRoot || !haveBusybox ? 'needs root, runc and busybox-static' : false }, async t => {
  const cluster = await Cluster.create(RAFT_TOML(1))
  t.teardown(async () => { await cluster.destroy() })
  const a = await cluster.add('d0', '[labels]\nzone = "earth"\n')
  await a.start(['init'])

  await t.test('run waits for placement, or says why not and exits 1', async t => {
    const ok = await a.cli(['run', IMAGE, '--name', 'fits', '--memory', '16M', '--', '/bin/sh', '-c', 'sleep 600'], 60_000)
    t.equal(ok.code, 0, `a capsule that fits: exit 0 (${ok.stderr.trim()})`)
    t.equal(ok.stdout.trim(), 'fits', 'prints its name')
    t.not((await ps(a)).find(r => r.name === 'fits')?.node ?? null, null, 'placed by the time run returns')

    const big = await a.cli(['run', IMAGE, '--name', 'too-big', '--memory', '500G', '--', '/bin/true'], 60_000)
    t.equal(big.code, 1, 'an impossible capsule: exit 1')
    t.match(big.stderr, /too-big cannot be placed: no node has 500\.0G memory free \(most free: [\d.]+[GM]\)/, `the reason (${big.stderr.trim()})`)
    t.equal((await ps(a)).find(r => r.name === 'too-big')?.state, 'pending', 'it stays pending')

    const mars = await a.cli(['--json', 'run', IMAGE, '--name', 'mars', '--on', 'zone=mars', '--', '/bin/true'], 60_000)
    t.equal(mars.code, 1, 'a selector no node matches: exit 1')
    t.match(mars.stderr, /no node has labels zone=mars/, 'names the selector')
    const rec = JSON.parse(mars.stdout) as { spec: { name: string }, desired: string, instances: unknown[], placement: { placed: number, pending: Array<{ instance: string, reason: string }> } }
    t.equal(rec.spec.name, 'mars', '--json keeps the capsule record')
    t.ok(Array.isArray(rec.instances), 'with its instances')
    t.same(rec.placement, { placed: 0, pending: [{ instance: 'mars', reason: 'no node has labels zone=mars' }], verdict: true }, 'and the placement outcome')

    const detached = await a.cli(['run', '--detach', IMAGE, '--name', 'mars2', '--on', 'zone=mars', '--', '/bin/true'], 60_000)
    t.equal(detached.code, 0, '--detach returns at once with exit 0')
    t.equal(detached.stdout.trim(), 'mars2')

    const bad = await a.cli(['run', 'Not A/Valid::Image', '--name', 'bad'], 30_000)
    t.equal(bad.code, 2, 'an invalid image reference is bad usage (exit 2)')
    t.match(bad.stderr, /invalid image reference/, `says so (${bad.stderr.trim()})`)
    t.notOk((await ps(a)).some(r => r.capsule === 'bad'), 'and nothing was submitted')
    for (const n of ['fits', 'too-big', 'mars', 'mars2']) t.equal((await a.cli(['rm', n])).code, 0, `rm ${n}`)
  })
})

// Quiet the linter about a helper kept for the later subtests.
void waitFor
