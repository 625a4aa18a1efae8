// Issue "Day-two operations": `run` that says what happened, logs with
// --tail/--since/-t across replicas, kv delete/list, ps --filter. One real
// agent, real runc, the built-in demo image (no registry needed).
import t from 'tap'
import { existsSync } from 'node:fs'
import { Cluster, waitFor, untilStopped, type AgentProcess } from '../helpers/harness.js'
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
    const ok = await a.cli(['run', IMAGE, '--name', 'fits', '--memory', '16M', '--', '/bin/sh', '-c', untilStopped()], 60_000)
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

  await t.test('logs: every replica with a prefix, --tail, --since, -t', async t => {
    const r = await a.cli(['run', IMAGE, '--name', 'chatty', '--replicas', '2', '--memory', '16M', '--', '/bin/sh', '-c', 'for i in 1 2 3; do echo early-$i; done; sleep 2; echo late; echo oops >&2; ' + untilStopped()], 60_000)
    t.equal(r.code, 0, `run (${r.stderr.trim()})`)
    let all = { code: -1, stdout: '', stderr: '' }
    const both = await waitFor(async () => {
      all = await a.cli(['logs', 'chatty'], 20_000)
      // oops (stderr) is each instance's last line: wait for it, so --tail below sees the whole output.
      return all.stdout.includes('chatty-0 | late') && all.stdout.includes('chatty-1 | late') && all.stderr.includes('chatty-0 | oops') && all.stderr.includes('chatty-1 | oops')
    }, 90_000, 500)
    t.ok(both >= 0, `logs NAME shows every replica, prefixed (${all.stdout.trim().split('\n').join(' / ')} ${all.stderr.trim()})`)
    t.match(all.stderr, /chatty-0 \| oops/, 'stderr lines carry the prefix too')
    const one = await a.cli(['logs', 'chatty-1'], 20_000)
    t.same(one.stdout.trim().split('\n'), ['early-1', 'early-2', 'early-3', 'late'], 'one instance by name: its lines, no prefix')

    // stdout and stderr are read by two pipes, so late and oops may be stored in either order.
    const lines = (r: { stdout: string, stderr: string }): string[] => (r.stdout + r.stderr).split('\n').filter(l => l !== '').sort()
    const tail = await a.cli(['logs', '--tail', '2', 'chatty-0'], 20_000)
    t.same(lines(tail), ['late', 'oops'], '--tail 2: the last two lines')
    const tailAll = await a.cli(['logs', '--tail', '1', 'chatty'], 20_000)
    const last = lines(tailAll)
    t.equal(last.length, 2, `--tail 1 of two replicas: two lines (${last.join(' / ')})`)
    t.ok(last[0]?.startsWith('chatty-0 | ') && last[1]?.startsWith('chatty-1 | '), 'one of each instance')
    t.ok(last.every(l => / \| (late|oops)$/.test(l)), 'each its last line')
    const stamped = await a.cli(['logs', '-t', 'chatty-0'], 20_000)
    t.match(stamped.stdout.split('\n')[0], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z early-1$/, `-t prefixes the time (${stamped.stdout.split('\n')[0] ?? ''})`)

    const json = await a.cli(['--json', 'logs', 'chatty-0'], 20_000)
    const recs = json.stdout.trim().split('\n').map(l => JSON.parse(l) as { line: string, time: number, stream: string, instance: string })
    const late = recs.find(x => x.line === 'late')
    t.equal(late?.instance, 'chatty-0', 'JSON records name their instance')
    const since = await a.cli(['logs', '--since', new Date(late?.time ?? 0).toISOString(), 'chatty-0'], 20_000)
    t.same(since.stdout.trim().split('\n'), ['late'], '--since TIME leaves out the earlier lines')
    const hour = await a.cli(['logs', '--since', '1h', 'chatty-0'], 20_000)
    t.equal(hour.stdout.trim().split('\n').length, 4, '--since 1h: all of them')
    for (const bad of [['--since', 'banana'], ['--tail', '-1'], ['--tail', 'x']]) {
      const b = await a.cli(['logs', ...bad, 'chatty'], 20_000)
      t.equal(b.code, 2, `logs ${bad.join(' ')} is bad usage (${b.stderr.trim()})`)
    }
    t.equal((await a.cli(['rm', 'chatty'])).code, 0)
  })

  await t.test('kv delete and list; ps --filter', async t => {
    for (const [k, v] of [['app/a', '1'], ['app/b', '2'], ['other', '3']]) t.equal((await a.cli(['kv', 'put', k as string, v as string])).code, 0, `put ${k ?? ''}`)
    const list = await a.cli(['kv', 'list', '--prefix', 'app/'])
    t.equal(list.code, 0, `kv list exits 0 (${list.stderr.trim()})`)
    t.same(list.stdout.trim().split('\n'), ['app/a', 'app/b'], 'the keys under the prefix, sorted')
    const json = await a.cli(['--json', 'kv', 'list'])
    t.ok((JSON.parse(json.stdout) as string[]).includes('other'), 'without --prefix: every key (JSON array)')
    const del = await a.cli(['kv', 'delete', 'app/a'])
    t.equal(del.code, 0, `kv delete exits 0 (${del.stderr.trim()})`)
    const gone = await a.cli(['kv', 'get', 'app/a'])
    t.equal(gone.code, 1, 'the key is gone')
    t.same((await a.cli(['kv', 'list', '--prefix', 'app/'])).stdout.trim().split('\n'), ['app/b'], 'and no longer listed')
    const again = await a.cli(['kv', 'delete', 'app/a'])
    t.equal(again.code, 1, 'deleting an absent key: exit 1')
    t.match(again.stderr, /no such key: app\/a/, 'saying so')

    t.equal((await a.cli(['run', IMAGE, '--name', 'up1', '--memory', '16M', '--', '/bin/sh', '-c', untilStopped()], 60_000)).code, 0)
    t.equal((await a.cli(['run', '--detach', IMAGE, '--name', 'nowhere', '--on', 'zone=mars', '--', '/bin/true'], 60_000)).code, 0)
    const ran = await waitFor(async () => (await ps(a)).find(r => r.name === 'up1')?.state === 'running', 60_000, 500)
    t.ok(ran >= 0, `up1 runs (${JSON.stringify((await ps(a)).find(r => r.name === 'up1'))})`)
    if (ran < 0) t.comment(a.stderrTail.slice(-30).join('\n'))
    t.same((await ps(a, '--filter', 'state=pending')).map(r => r.name), ['nowhere'], '--filter state=pending')
    t.same((await ps(a, '--filter', 'node=d0')).map(r => r.name), ['up1'], '--filter node=NAME')
    t.same((await ps(a, '--filter', `node=${a.id}`, '--filter', 'state=running')).map(r => r.name), ['up1'], 'node=ID and state together')
    t.same((await ps(a, '--filter', 'state=running', '--filter', 'state=pending')).map(r => r.name).sort(), ['nowhere', 'up1'], 'one key twice: either value')
    for (const bad of ['state=asleep', 'colour=red', 'node']) {
      const b = await a.cli(['ps', '--filter', bad])
      t.equal(b.code, 2, `--filter ${bad} is bad usage (${b.stderr.trim()})`)
    }
    for (const n of ['up1', 'nowhere']) t.equal((await a.cli(['rm', n])).code, 0, `rm ${n}`)
  })
})
