// Issue 24: rollouts and drains run in the agents, not in the CLI. The `up`
// CLI is killed (SIGKILL) mid-rollout of 3 replicas behind an http check:
// the rollout still completes, and a broken version still stops with the
// old instances running. The `node drain` CLI is killed mid-drain: the
// drain still completes. `up --detach` returns at once and `up` run again
// follows the rollout. Real agents, real runc, the built-in busybox image.
import t from 'tap'
import { execFile, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Cluster, waitFor, untilStopped, type AgentProcess } from '../helpers/harness.js'
import { RAFT_TOML, apiOf } from '../../scenarios/_raft.js'
import { rollStack, serveVersion } from '../helpers/roll-stack.js'

const run = promisify(execFile)
const IMAGE = 'bolt.local/busybox:demo'
const ok = (existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc')) && process.getuid?.() === 0 && existsSync('/bin/busybox')

interface Deployment { id: string, status: string, pending: string[], replaced: string[], current: { instance: string } | null, reason: string | null }
interface Ps { name: string, capsule: string, node: string | null, state: string, health: string | null }

async function get<T> (a: AgentProcess, path: string): Promise<T | undefined> {
  const api = await apiOf(a)
  const res = await fetch(`${api.url}${path}`, { headers: { authorization: `Bearer ${api.token}` } }).catch(() => undefined)
  return res?.ok === true ? await res.json() as T : undefined
}

/** Kills the CLI with SIGKILL once `when` holds; resolves with its exit signal. */
async function killWhen (p: ChildProcess, when: () => Promise<boolean>): Promise<NodeJS.Signals | null> {
  const exited = new Promise<NodeJS.Signals | null>(resolve => p.once('exit', (_code, sig) => resolve(sig)))
  const seen = await waitFor(async () => p.exitCode !== null || await when(), 120_000, 100)
  if (seen < 0 || p.exitCode !== null) { p.kill('SIGKILL'); await exited; return null }
  p.kill('SIGKILL')
  return await exited
}

async function runcList (a: AgentProcess): Promise<string[]> {
  const r = await run('runc', ['--root', join(a.dataDir, 'runtime', 'runc-state'), 'list', '-q']).catch(() => ({ stdout: '' }))
  return r.stdout.split('\n').map(s => s.trim()).filter(Boolean).sort()
}

t.test('a rollout goes on when the up CLI is killed', { skip: ok ? false : 'needs root, runc and busybox-static', timeout: 600_000 }, async t => {
  const cluster = await Cluster.create(`${RAFT_TOML(1)}\n[network]\nbridge = "bd2kill${process.pid % 1000}"\nsubnet = "10.78.${process.pid % 200}.0/24"\n`)
  t.teardown(async () => { await cluster.destroy() })
  const a = await cluster.add('k0')
  await a.start(['init'], 90_000)
  const file = join(cluster.root, 'roll.toml')
  const stack = (cmd: string): string => rollStack(IMAGE, cmd)
  const serve = serveVersion
  const deployment = async (): Promise<Deployment | undefined> => await get<Deployment>(a, '/v1/capsules/web/deployment')
  const serving = async (i: string): Promise<string> => (await a.cli(['exec', i, '--', 'cat', '/www/index.html'], 30_000)).stdout.trim()
  await writeFile(file, stack(serve('v1')))
  const v1 = await a.cli(['up', '-f', file], 180_000)
  t.equal(v1.code, 0, `up v1 (${v1.stderr.trim()})`)

  await writeFile(file, stack(serve('v2')))
  const up2 = a.spawnCli(['up', '-f', file])
  // Killed once the first instance is replaced and the second is under way: half the capsule on each version.
  const sig = await killWhen(up2, async () => { const d = await deployment(); return d?.status === 'running' && d.replaced.length === 1 && d.current !== null })
  t.equal(sig, 'SIGKILL', 'the up CLI was killed mid-rollout')
  t.ok(await waitFor(async () => (await deployment())?.status === 'succeeded', 180_000, 300) >= 0, 'the rollout completes without it')
  t.same((await deployment())?.replaced, ['web-0', 'web-1', 'web-2'], 'every instance replaced, in order')
  const rows = (await get<Ps[]>(a, '/v1/capsules') ?? []).filter(r => r.capsule === 'web')
  t.same(rows.map(r => [r.name, r.state, r.health]), [['web-0', 'running', 'healthy'], ['web-1', 'running', 'healthy'], ['web-2', 'running', 'healthy']], 'all healthy')
  for (const i of ['web-0', 'web-1', 'web-2']) t.equal(await serving(i), 'v2', `${i} serves v2`)
  const again = await a.cli(['up', '-f', file], 60_000)
  t.equal(again.code, 0, 'up again: nothing to change')
  t.match(again.stdout, /0 to add, 0 to change, 0 to remove/)

  await writeFile(file, stack('echo broken >&2; exit 3'))
  const up3 = a.spawnCli(['up', '-f', file])
  const sig3 = await killWhen(up3, async () => (await deployment())?.current?.instance === 'web-0')
  t.equal(sig3, 'SIGKILL', 'the up CLI was killed while web-0 was being replaced')
  t.ok(await waitFor(async () => (await deployment())?.status === 'failed', 180_000, 300) >= 0, 'the broken version still stops the rollout')
  t.match((await deployment())?.reason, /^web-0 .*; web-1, web-2 still run the previous version; the spec is back to the previous one$/)
  const spec = JSON.parse((await a.cli(['--json', 'inspect', 'web'])).stdout) as { spec: { args: string[] } }
  t.match(spec.spec.args[2], /echo v2/, 'the spec is back to the previous version')
  const after = (await get<Ps[]>(a, '/v1/capsules') ?? []).filter(r => r.capsule === 'web' && r.name !== 'web-0')
  t.same(after.map(r => [r.state, r.health]), [['running', 'healthy'], ['running', 'healthy']], 'the old instances still run, healthy')
  for (const i of ['web-1', 'web-2']) t.equal(await serving(i), 'v2', `${i} still serves v2`)
  t.ok(await waitFor(async () => (await get<Ps[]>(a, '/v1/capsules') ?? []).find(r => r.name === 'web-0')?.health === 'healthy', 120_000, 500) >= 0, 'web-0 runs the previous version again')
  t.equal(await serving('web-0'), 'v2')

  // --detach returns once the rollout is recorded; up again follows it to the end.
  await writeFile(file, stack(serve('v3')))
  const detached = await a.cli(['up', '-f', file, '--detach'], 60_000)
  t.equal(detached.code, 0, `up --detach (${detached.stderr.trim()})`)
  t.match(detached.stdout, /^web rolling out \(web-0, web-1, web-2\); run up again to follow$/m)
  const follow = await a.cli(['up', '-f', file], 300_000)
  t.equal(follow.code, 0, `up again follows the rollout (${follow.stderr.trim()})`)
  t.match(follow.stdout, /0 to change/, 'nothing left to change: the spec is v3 already')
  t.match(follow.stdout, /web running$/m)
  t.equal((await deployment())?.status, 'succeeded', 'and it waited for the rollout to end')
  for (const i of ['web-0', 'web-1', 'web-2']) t.equal(await serving(i), 'v3', `${i} serves v3`)
})

t.test('a drain goes on when the node drain CLI is killed', { skip: ok ? false : 'needs root, runc and busybox-static', timeout: 600_000 }, async t => {
  const cluster = await Cluster.create(RAFT_TOML(1))
  t.teardown(async () => { await cluster.destroy() })
  const a0 = await cluster.add('m0')
  await a0.start(['init'], 90_000)
  const a1 = await cluster.add('m1')
  await a1.start(['join', a0.ready!.node.addrs.find(x => x.includes('/quic-v1'))!, '--token', a0.ready!.token], 90_000)
  t.ok(await waitFor(async () => (await a0.status())?.members.filter(m => m.state === 'alive').length === 2, 60_000, 500) >= 0, 'two members')
  t.equal((await a0.cli(['node', 'eligibility', 'm0', 'disable'])).code, 0)
  const caps = ['d1', 'd2', 'd3']
  for (const n of caps) {
    const r = await a0.cli(['run', IMAGE, '--name', n, '--network', 'none', '--memory', '16M', '--cpu', '0.05', '--check', 'exec:true', '--check-interval', '300ms', '--', '/bin/sh', '-c', untilStopped()], 60_000)
    t.equal(r.code, 0, `run ${n} (${r.stderr.trim()})`)
  }
  const ps = async (): Promise<Ps[]> => await get<Ps[]>(a0, '/v1/capsules') ?? []
  t.ok(await waitFor(async () => (await ps()).filter(r => r.node === a1.id && r.health === 'healthy').length === 3, 90_000, 500) >= 0, 'all 3 run healthy on m1')
  t.equal((await a0.cli(['node', 'eligibility', 'm0', 'enable'])).code, 0)

  const drain = a0.spawnCli(['node', 'drain', 'm1', '--deadline', '5m'])
  let printed = ''
  drain.stdout?.on('data', (d: Buffer) => { printed += d.toString() })
  const sig = await killWhen(drain, async () => /draining m1: 3 instance\(s\) to move/.test(printed))
  t.equal(sig, 'SIGKILL', 'the drain CLI was killed once the drain started')
  t.ok(await waitFor(async () => (await get<{ drain: { status: string, released: string[] } | null }>(a0, `/v1/nodes/${a1.id}/drain`))?.drain?.status === 'done', 180_000, 500) >= 0, 'the drain completes without it')
  t.same((await get<{ drain: { released: string[] } }>(a0, `/v1/nodes/${a1.id}/drain`))?.drain.released, [], 'nothing was cut off by the deadline')
  t.same((await ps()).filter(r => caps.includes(r.name)).map(r => [r.name, r.node === a0.id, r.state, r.health]), caps.map(c => [c, true, 'running', 'healthy']), 'all 3 run healthy on m0')
  t.ok(await waitFor(async () => (await runcList(a1)).length === 0, 30_000, 300) >= 0, 'nothing left under runc on m1')
})
