// Issue 24, changing what runs: restart, scale, run --rm, stop of an exited
// capsule, down naming only what it removed, and `up` of an edited stack —
// a rolling update of 3 replicas behind an http check that keeps at least 2
// healthy, and a broken version that stops the rollout with the old ones
// still serving. One real agent, real runc, the built-in busybox image.
import t from 'tap'
import { execFile } from 'node:child_process'
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

interface Inst { name: string, state: string, health: string | null, generation: number, restarts: number }
interface Ps { name: string, capsule: string, state: string, health: string | null }

async function inspect (a: AgentProcess, name: string): Promise<{ desired: string, instances: Inst[] } | undefined> {
  const r = await a.cli(['--json', 'inspect', name], 15_000)
  return r.code === 0 ? JSON.parse(r.stdout) as { desired: string, instances: Inst[] } : undefined
}
async function ps (a: AgentProcess): Promise<Ps[]> {
  const r = await a.cli(['ps', '--json'], 15_000)
  return r.code === 0 ? JSON.parse(r.stdout) as Ps[] : []
}
/** The containers runc runs for this agent. */
async function runcList (a: AgentProcess): Promise<string[]> {
  const r = await run('runc', ['--root', join(a.dataDir, 'runtime', 'runc-state'), 'list', '-q']).catch(() => ({ stdout: '' }))
  return r.stdout.split('\n').map(s => s.trim()).filter(Boolean).sort()
}

t.test('day-two changes on one agent', { skip: ok ? false : 'needs root, runc and busybox-static', timeout: 600_000 }, async t => {
  const cluster = await Cluster.create(`${RAFT_TOML(1)}\n[network]\nbridge = "bd2ops${process.pid % 1000}"\nsubnet = "10.77.${process.pid % 200}.0/24"\n`)
  t.teardown(async () => { await cluster.destroy() })
  const a = await cluster.add('o0')
  await a.start(['init'])
  const capsule = async (name: string, ...args: string[]): Promise<void> => {
    const r = await a.cli(['run', IMAGE, '--name', name, '--network', 'none', '--memory', '16M', ...args], 60_000)
    if (r.code !== 0) throw new Error(`run ${name}: ${r.stderr}`)
  }

  await t.test('restart, stop of an exited capsule, scale, run --rm', async t => {
    await capsule('r1', '--', '/bin/sh', '-c', untilStopped())
    t.ok(await waitFor(async () => (await inspect(a, 'r1'))?.instances[0]?.state === 'running', 60_000, 500) >= 0, 'r1 runs')
    t.same(await runcList(a), ['r1.g1'])
    const rs = await a.cli(['restart', 'r1'])
    t.equal(rs.code, 0, `restart exits 0 (${rs.stderr.trim()})`)
    t.match(rs.stdout, /r1 restarting/)
    t.ok(await waitFor(async () => { const i = (await inspect(a, 'r1'))?.instances[0]; return i?.state === 'running' && i.generation === 2 }, 60_000, 500) >= 0, 'r1 runs again, placed afresh')
    t.ok(await waitFor(async () => (await runcList(a)).join() === 'r1.g2', 30_000, 500) >= 0, 'the old run is gone from runc')
    t.equal((await a.cli(['restart', 'nope'])).code, 1, 'restart of an unknown capsule: exit 1')

    await capsule('once', '--', '/bin/true')
    t.ok(await waitFor(async () => (await inspect(a, 'once'))?.instances[0]?.state === 'exited', 60_000, 500) >= 0, 'once exits')
    const st = await a.cli(['stop', 'once'])
    t.equal(st.code, 1, 'stop of an exited capsule: exit 1')
    t.match(st.stderr, /once is not running \(exited\)/, `says it is not running (${st.stderr.trim()})`)
    t.equal((await a.cli(['restart', 'once'])).code, 0)
    t.ok(await waitFor(async () => { const i = (await inspect(a, 'once'))?.instances[0]; return i?.state === 'exited' && i.generation === 2 }, 60_000, 500) >= 0, 'restart runs an exited capsule again')

    const up = await a.cli(['scale', 'r1', '3'])
    t.equal(up.code, 0, `scale r1 3 (${up.stderr.trim()})`)
    t.match(up.stdout, /r1 scaled to 3 \(r1, r1-1, r1-2\)/)
    t.ok(await waitFor(async () => (await inspect(a, 'r1'))?.instances.filter(i => i.state === 'running').length === 3, 60_000, 500) >= 0, 'three run')
    t.equal((await a.cli(['scale', 'r1', '1'])).code, 0, 'scale r1 1')
    t.ok(await waitFor(async () => (await runcList(a)).filter(n => n.startsWith('r1')).join() === 'r1.g2', 30_000, 500) >= 0, 'the two added are stopped and gone from runc')
    for (const bad of [['r1', '0'], ['r1', 'x'], ['r1', '1001']]) t.equal((await a.cli(['scale', ...bad])).code, 2, `scale ${bad.join(' ')} is bad usage`)
    t.equal((await a.cli(['scale', 'nope', '2'])).code, 1, 'scale of an unknown capsule: exit 1')

    await capsule('gone', '--rm', '--', '/bin/sh', '-c', 'echo bye')
    t.ok(await waitFor(async () => !(await ps(a)).some(r => r.capsule === 'gone'), 60_000, 500) >= 0, 'run --rm: removed once it exited')
    for (const n of ['r1', 'once']) t.equal((await a.cli(['rm', n])).code, 0)
  })

  await t.test('down names only what it removed', async t => {
    const file = join(cluster.root, 'pair.toml')
    await writeFile(file, `name = "pair"\n[capsules.p1]\nimage = "${IMAGE}"\nnetwork = "none"\nmemory = "16M"\nargs = ["/bin/sh", "-c", ${JSON.stringify(untilStopped())}]\n[capsules.p2]\nimage = "${IMAGE}"\nnetwork = "none"\nmemory = "16M"\nargs = ["/bin/sh", "-c", ${JSON.stringify(untilStopped())}]\n`)
    const up = await a.cli(['up', '-f', file], 120_000)
    t.equal(up.code, 0, `up (${up.stderr.trim()})`)
    t.match(up.stdout, /plan for stack pair: 2 to add, 0 to change, 0 to remove/)
    t.equal((await a.cli(['rm', 'p1'])).code, 0)
    const down = await a.cli(['down', '-f', file])
    t.equal(down.code, 0)
    t.same(down.stdout.trim().split('\n'), ['p2 removed'], 'p1 was gone already: not named')
  })

  await t.test('up of an edited stack: rolling update behind an http check', async t => {
    const file = join(cluster.root, 'roll.toml')
    const stack = (cmd: string): string => rollStack(IMAGE, cmd)
    const serve = serveVersion
    await writeFile(file, stack(serve('v1')))
    const v1 = await a.cli(['up', '-f', file], 180_000)
    t.equal(v1.code, 0, `up v1 (${v1.stderr.trim()})`)

    await writeFile(file, stack(serve('v2')))
    const dry = await a.cli(['up', '-f', file, '--dry-run'], 60_000)
    t.equal(dry.code, 0)
    t.same(dry.stdout.trim().split('\n'), ['plan for stack roll: 0 to add, 1 to change, 0 to remove', '  ~ web (changed: args; replaced one instance at a time)'], '--dry-run prints the plan only')
    t.same((await inspect(a, 'web'))?.instances.map(i => i.generation), [1, 1, 1], 'and changes nothing')

    // Sample health straight from the API while the rollout runs.
    const api = await apiOf(a)
    let sampling = true
    const samples: number[] = []
    const sampler = (async () => {
      while (sampling) {
        const res = await fetch(`${api.url}/v1/capsules`, { headers: { authorization: `Bearer ${api.token}` } }).catch(() => undefined)
        if (res?.ok === true) samples.push(((await res.json()) as Ps[]).filter(r => r.capsule === 'web' && r.state === 'running' && r.health === 'healthy').length)
        await new Promise(resolve => setTimeout(resolve, 100))
      }
    })()
    const v2 = await a.cli(['up', '-f', file], 300_000)
    sampling = false
    await sampler
    t.equal(v2.code, 0, `up v2 (${v2.stderr.trim()})`)
    t.match(v2.stdout, /web-0 replaced\nweb-1 replaced\nweb-2 replaced\nweb running$/m, 'one instance at a time')
    t.ok(samples.length >= 10, `sampled while it ran (${samples.length} samples)`)
    t.ok(samples.every(n => n >= 2), `at least 2 healthy in every sample (min ${Math.min(...samples)})`)
    for (const i of ['web-0', 'web-1', 'web-2']) {
      const r = await a.cli(['exec', i, '--', 'cat', '/www/index.html'], 30_000)
      t.equal(r.stdout.trim(), 'v2', `${i} serves v2`)
    }

    await writeFile(file, stack('echo broken >&2; exit 3'))
    const v3 = await a.cli(['up', '-f', file], 300_000)
    t.equal(v3.code, 1, 'a broken version: exit 1')
    t.match(v3.stderr, /rollout of web stopped: web-0 .*web-1, web-2 still run the previous version/, `says where it stopped (${v3.stderr.trim()})`)
    const after = await inspect(a, 'web')
    t.same(after?.instances.filter(i => i.name !== 'web-0').map(i => [i.state, i.health]), [['running', 'healthy'], ['running', 'healthy']], 'the old instances still run, healthy')
    for (const i of ['web-1', 'web-2']) t.equal((await a.cli(['exec', i, '--', 'cat', '/www/index.html'], 30_000)).stdout.trim(), 'v2', `${i} still serves v2`)
    const spec = JSON.parse((await a.cli(['--json', 'inspect', 'web'])).stdout) as { spec: { args: string[] } }
    t.match(spec.spec.args[2], /echo v2/, 'the spec is back to the previous version')
  })
})
