// Issue 24, capsule spec: -v HOST:CONTAINER[:ro] under the node's volume
// roots (refused elsewhere with the reason), -w, -u and --entrypoint.
// One real agent, real runc, the built-in busybox image.
import t from 'tap'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, waitFor } from '../../scenarios/harness.js'
import { RAFT_TOML } from '../../scenarios/_raft.js'
import { parseVolume } from '../../agent/day2/cli.js'

const IMAGE = 'bolt.local/busybox:demo'
const ok = (existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc')) && process.getuid?.() === 0 && existsSync('/bin/busybox')

t.test('-v parsing', async t => {
  t.same(parseVolume('/srv/a:/data'), { host: '/srv/a', target: '/data', readOnly: false })
  t.same(parseVolume('/srv/a:/data:ro'), { host: '/srv/a', target: '/data', readOnly: true })
  for (const bad of ['srv:/data', '/a', '/a:b', '/a:/b:rx', '']) t.throws(() => parseVolume(bad), /expected HOST:CONTAINER/, bad)
})

t.test('volumes, workdir, user and entrypoint on a real capsule', { skip: ok ? false : 'needs root, runc and busybox-static', timeout: 300_000 }, async t => {
  const vols = await mkdtemp(join(tmpdir(), 'bolt-vols-'))
  const outside = await mkdtemp(join(tmpdir(), 'bolt-outside-'))
  t.teardown(async () => { await rm(vols, { recursive: true, force: true }); await rm(outside, { recursive: true, force: true }) })
  await mkdir(join(vols, 'data'))
  const cluster = await Cluster.create(RAFT_TOML(1))
  t.teardown(async () => { await cluster.destroy() })
  const a = await cluster.add('v0', `[capsules]\nvolume_roots = ["${vols}"]\n`)
  await a.start(['init'])
  const state = async (name: string): Promise<{ state: string, reason: string | null } | undefined> => {
    const r = await a.cli(['ps', '--json'], 15_000)
    return r.code === 0 ? (JSON.parse(r.stdout) as Array<{ name: string, state: string, reason: string | null }>).find(x => x.name === name) : undefined
  }
  const finished = async (name: string): Promise<{ state: string, reason: string | null } | undefined> => {
    await waitFor(async () => ['exited', 'failed'].includes((await state(name))?.state ?? ''), 60_000, 500)
    return await state(name)
  }
  const base = ['run', IMAGE, '--network', 'none', '--memory', '16M']

  const w = await a.cli([...base, '--name', 'writer', '-v', `${vols}/data:/data`, '-w', '/data', '-u', '1000:1000', '--', '/bin/sh', '-c', 'echo "$(id -u):$(id -g) $(pwd)"'], 60_000)
  t.equal(w.code, 0, `run with -v -w -u (${w.stderr.trim()})`)
  t.equal((await finished('writer'))?.state, 'exited', 'it ran')
  const logs = await a.cli(['logs', 'writer'])
  t.equal(logs.stdout.trim(), '1000:1000 /data', '-u and -w apply')

  const rw = await a.cli([...base, '--name', 'rw', '-v', `${vols}/data:/data`, '--', '/bin/sh', '-c', 'echo hello > /data/hello.txt'], 60_000)
  t.equal(rw.code, 0)
  t.equal((await finished('rw'))?.state, 'exited')
  t.equal((await readFile(join(vols, 'data', 'hello.txt'), 'utf8')).trim(), 'hello', 'a write inside the capsule lands on the host path')

  const ro = await a.cli([...base, '--name', 'ro', '-v', `${vols}/data:/data:ro`, '--', '/bin/sh', '-c', 'echo no > /data/ro.txt'], 60_000)
  t.equal(ro.code, 0)
  t.equal((await finished('ro'))?.state, 'failed', ':ro: the write fails')
  t.notOk(existsSync(join(vols, 'data', 'ro.txt')), 'and nothing is written')

  const out = await a.cli([...base, '--name', 'outside', '-v', `${outside}:/data`, '--', '/bin/true'], 60_000)
  t.equal(out.code, 0)
  const refused = await finished('outside')
  t.equal(refused?.state, 'failed', 'a host path outside volume_roots is refused')
  t.match(refused?.reason, /outside the declared volume roots/, `with the reason (${refused?.reason ?? ''})`)

  const ep = await a.cli([...base, '--name', 'ep', '--entrypoint', '/bin/echo', '--', 'from', 'entrypoint'], 60_000)
  t.equal(ep.code, 0)
  t.equal((await finished('ep'))?.state, 'exited')
  t.equal((await a.cli(['logs', 'ep'])).stdout.trim(), 'from entrypoint', '--entrypoint replaces the entrypoint; the rest are its arguments')
  for (const bad of [['-u', 'nobody'], ['-w', 'rel'], ['-v', 'x:/y']]) {
    const b = await a.cli([...base, '--name', 'bad', ...bad, '--', '/bin/true'])
    t.equal(b.code, 2, `${bad.join(' ')} is bad usage (${b.stderr.trim()})`)
  }

  // Metrics: instances by state and node, pending by reason, placements.
  t.equal((await a.cli([...base, '--detach', '--name', 'mars', '--on', 'zone=mars', '--', '/bin/true'])).code, 0)
  let text = ''
  const seen = await waitFor(async () => {
    const { url } = JSON.parse(await readFile(join(a.dataDir, 'api.json'), 'utf8')) as { url: string }
    text = await (await fetch(`${url}/metrics`)).text()
    return text.includes('bolt_capsule_pending{reason="no node has labels zone=mars"} 1')
  }, 30_000, 500)
  t.ok(seen >= 0, 'pending by reason')
  t.match(text, new RegExp(`bolt_capsule_instances\\{state="exited",node="${a.id}"\\} 3`), 'instances by state and node')
  t.match(text, /bolt_capsule_instances\{state="failed",node="[^"]+"\} 2/)
  t.match(text, /bolt_scheduler_placements_total 5/, 'the placements this scheduler committed')
  t.match(text, new RegExp(`bolt_capsule_restarts\\{node="${a.id}"\\} 0`), 'restarts by node')
})
