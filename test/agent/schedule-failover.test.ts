// kill -9 the Raft leader while capsules are being scheduled: once things
// settle, every instance is placed exactly once and runs in exactly one place.
import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Cluster, waitFor, untilStopped, type AgentProcess } from '../helpers/harness.js'
import { RAFT_TOML, agreedLeader, formVoters } from '../../scenarios/_raft.js'
import { buildImage, pushImage, startRegistry, REGISTRY_BIN } from '../helpers/registry.js'

const run = promisify(execFile)
interface Ps { name: string, node: string | null, state: string }

async function containers (a: AgentProcess): Promise<string[]> {
  const out = await run('runc', ['--root', join(a.dataDir, 'runtime', 'runc-state'), 'list', '-q']).then(r => r.stdout, () => '')
  return out.split('\n').map(s => s.trim()).filter(Boolean)
}

const ok = process.getuid?.() === 0 && (existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc')) && existsSync(REGISTRY_BIN)

t.test('leader killed mid-scheduling: nothing placed or running twice', { skip: ok ? false : 'needs root, runc and docker-registry (.ci/run installs them)' }, async t => {
  const registry = await startRegistry()
  t.teardown(async () => { await registry.stop() })
  await pushImage(registry.url, 'demo/busybox', '1', await buildImage())
  const IMAGE = `${registry.host}/demo/busybox:1`
  const cluster = await Cluster.create(RAFT_TOML(3))
  t.teardown(async () => { await cluster.destroy() })
  const agents = await formVoters(cluster, 3)
  const lead = await agreedLeader(agents, 30_000)
  const leader = agents.find(a => a.id === lead?.leader)!
  const follower = agents.find(a => a !== leader)!
  const r = await follower.cli(['run', IMAGE, '--network', 'none', '--name', 'burst', '--replicas', '6', '--cpu', '0.01', '--memory', '8M', '--', '/bin/sh', '-c', untilStopped()])
  t.equal(r.code, 0, 'submitted through a follower')
  await leader.kill9()
  const survivors = agents.filter(a => a !== leader)
  t.ok(await agreedLeader(survivors, 15_000, leader.id), 'a new leader')
  // The old leader's node is dead past the grace period: its instances move.
  const placed = await waitFor(async () => {
    const rows = JSON.parse((await follower.cli(['ps', '--json'])).stdout) as Ps[]
    const mine = rows.filter(x => x.name.startsWith('burst-'))
    return mine.length === 6 && mine.every(x => x.state === 'running' && x.node !== leader.id)
  }, 90_000, 500)
  t.ok(placed >= 0, 'all six instances run on the survivors')
  // Bring the old leader back: it must stop what it ran for instances that moved.
  await leader.start(['start'])
  const single = await waitFor(async () => {
    const all = (await Promise.all(agents.map(containers))).flat().filter(n => n.startsWith('burst-'))
    const instances = all.map(n => n.replace(/\.g\d+$/, ''))
    return all.length === 6 && new Set(instances).size === 6
  }, 60_000, 1000)
  const names = (await Promise.all(agents.map(containers))).flat().filter(n => n.startsWith('burst-'))
  t.ok(single >= 0, `each instance runs in exactly one place (${names.join(' ')})`)
  const rows = JSON.parse((await follower.cli(['ps', '--json'])).stdout) as Ps[]
  t.equal(rows.filter(x => x.name.startsWith('burst-')).length, 6, 'ps lists each instance once')
})
