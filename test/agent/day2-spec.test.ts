// Issue 24, capsule spec: -v HOST:CONTAINER[:ro] under the node's volume
// roots (refused elsewhere with the reason), -w, -u and --entrypoint.
// One real agent, real runc, the built-in busybox image.
import t from 'tap'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, waitFor, untilStopped } from '../helpers/harness.js'
import { RAFT_TOML } from '../../scenarios/_raft.js'
import { parseVolume } from '../../agent/day2/cli.js'
import { buildImage, pushImage, startRegistry } from '../helpers/registry.js'

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
  await a.start(['init'], 90_000)
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
  t.match(text, /bolt_raft_term [1-9]\d*\n/, 'the Raft term')
  t.match(text, /bolt_raft_commit_index [1-9]\d*\n/, 'the commit index')
  // logs --previous: the run before a restart.
  t.equal((await a.cli([...base, '--name', 'crashy', '--restart', 'on-failure', '--', '/bin/sh', '-c', 'echo run-$(cat /proc/sys/kernel/random/uuid); sleep 2; exit 1'])).code, 0)
  let prev = ''
  let cur = ''
  const both = await waitFor(async () => {
    const p = await a.cli(['logs', '--previous', 'crashy'])
    const c = await a.cli(['logs', 'crashy'])
    prev = p.stdout.trim()
    cur = c.stdout.trim()
    return p.code === 0 && /^run-\S+$/.test(prev) && /^run-\S+$/.test(cur) && prev !== cur
  }, 60_000, 300)
  t.ok(both >= 0, `logs --previous shows the run before the restart (${prev}), logs the current one (${cur})`)
  t.equal((await a.cli(['logs', '--previous', '-f', 'crashy'])).code, 2, '--previous with -f is bad usage')
  t.equal((await a.cli(['logs', '--previous', 'ep'])).code, 1, 'an instance that never restarted has no previous run: exit 1')
  t.equal((await a.cli(['rm', 'crashy'])).code, 0)

  // object ls / rm, rmi
  const file = join(vols, 'obj.bin')
  await writeFile(file, 'some bytes for an object\n')
  const put = await a.cli(['object', 'put', file, '--replicas', '0'])
  t.equal(put.code, 0, `object put (${put.stderr.trim()})`)
  const id = put.stdout.trim()
  const ls = await a.cli(['--json', 'object', 'ls'])
  t.same((JSON.parse(ls.stdout) as Array<{ id: string, size: number }>).map(r => [r.id, r.size]), [[id, 25]], 'object ls lists it')
  t.equal((await a.cli(['object', 'rm', id])).code, 0, 'object rm')
  t.same(JSON.parse((await a.cli(['--json', 'object', 'ls'])).stdout), [], 'and it is no longer listed')
  t.equal((await a.cli(['object', 'rm', id])).code, 1, 'object rm of an absent object: exit 1')
  t.equal((await a.cli(['object', 'rm', 'nope'])).code, 2, 'a malformed id: exit 2')
  t.equal((await a.cli([...base, '--name', 'holder', '--', '/bin/sh', '-c', untilStopped()])).code, 0)
  t.ok(await waitFor(async () => (await state('holder'))?.state === 'running', 60_000, 500) >= 0)
  const busy = await a.cli(['rmi', IMAGE])
  t.equal(busy.code, 1, 'rmi of an image a capsule here runs: exit 1')
  t.match(busy.stderr, /used by capsule holder/, busy.stderr.trim())
  t.equal((await a.cli(['rm', 'holder'])).code, 0)
  const registry = await startRegistry()
  t.teardown(async () => { await registry.stop() })
  await pushImage(registry.url, 'day2/rmi', '1', await buildImage())
  const ref = `${registry.host}/day2/rmi:1`
  t.equal((await a.cli(['pull', ref], 60_000)).code, 0, 'pull an image')
  t.ok((await a.cli(['images'])).stdout.includes('day2/rmi'), 'images lists it')
  const gone = await a.cli(['rmi', ref])
  t.equal(gone.code, 0, `rmi once nothing uses it (${gone.stderr.trim()})`)
  t.notOk((await a.cli(['images'])).stdout.includes('day2/rmi'), 'images no longer lists it')
  t.equal((await a.cli(['rmi', ref])).code, 1, 'rmi of an absent image: exit 1')
  t.equal((await a.cli(['rmi', 'Not A/Valid::Image'])).code, 2, 'an invalid reference: exit 2')

  // The demo image is built here, not pulled: rmi removes it from the runtime once no capsule holds it.
  const held = await a.cli(['rmi', IMAGE])
  t.equal(held.code, 1, 'rmi of the demo image while exited capsules keep it: exit 1')
  t.match(held.stderr.trim().split('\n'), [/^bolt-agent: bolt\.local\/busybox:demo is held by stopped capsule\(s\) .*\bep\b.* \(rm them first\)$/], `one line naming them (${held.stderr.trim()})`)
  const holders = /capsule\(s\) (.*) \(rm them first\)/.exec(held.stderr)?.[1]?.split(', ') ?? []
  for (const h of holders) t.equal((await a.cli(['rm', h])).code, 0, `rm ${h}`)
  t.ok(await waitFor(async () => (await a.cli(['rmi', IMAGE])).code === 0, 60_000, 500) >= 0, 'rmi of the demo image once nothing holds it')
  const again = await a.cli(['rmi', IMAGE])
  t.equal(again.code, 1, 'a second rmi: exit 1')
  t.match(again.stderr, /no image bolt\.local\/busybox:demo on this node/)
  t.equal((await a.cli([...base, '--name', 'rebuilt', '--', '/bin/true'])).code, 0)
  t.ok(await waitFor(async () => (await state('rebuilt'))?.state === 'exited', 60_000, 500) >= 0, 'a capsule that names it builds it again')
  t.match(text, new RegExp(`bolt_capsule_restarts\\{node="${a.id}"\\} 0`), 'restarts by node')
})
