// Issue #23, discovery: real agents, runc and the busybox image built on each
// node. An exec health check that starts failing takes the instance out of
// `services` and DNS, and passing again brings it back; dig gets A and SRV
// answers, NXDOMAIN under .bolt and a forwarded answer from a dnsmasq on
// loopback; kill -9 of the node takes its entries out once it is dead.
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Cluster, waitFor, untilStopped, type AgentProcess } from '../helpers/harness.js'
import { RAFT_TOML, agreedLeader, apiOf, kv } from '../../scenarios/_raft.js'
import { freePort } from '../helpers/registry.js'

const run = promisify(execFile)
const haveRunc = existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc') || existsSync('/usr/bin/crun')
const ok = haveRunc && process.getuid?.() === 0 && existsSync('/bin/busybox') && existsSync('/usr/bin/dig') && existsSync('/usr/sbin/dnsmasq')

interface Service { name: string, instances: Array<{ instance: string, node: string, address: string, ports: Array<{ host: number, container: number, proto: string }>, health: string }> }

async function services (a: AgentProcess): Promise<Service[]> {
  const r = await a.cli(['services', '--json'], 15_000)
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout) as Service[]
}

async function dig (server: string, args: string[]): Promise<string> {
  const [host, port] = server.split(':') as [string, string]
  const r = await run('dig', [`@${host}`, '-p', port, '+time=2', '+tries=1', ...args]).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }))
  return r.stdout
}

t.test('health checks drive the catalog and DNS', { skip: ok ? false : 'needs root, runc, busybox, dig and dnsmasq' }, async t => {
  // A tiny resolver for the forwarded name: dnsmasq on a loopback port, answering from a hosts file only.
  const dir = await mkdtemp(join(tmpdir(), `bolt-dns-${process.pid}-`))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await writeFile(join(dir, 'hosts'), '192.0.2.77 outside.example.test\n')
  const upstreamPort = await freePort()
  const dnsmasq = spawn('/usr/sbin/dnsmasq', ['--keep-in-foreground', '--no-resolv', '--no-hosts', `--addn-hosts=${join(dir, 'hosts')}`, `--port=${upstreamPort}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--pid-file=', '--user=root', '--conf-file=/dev/null'], { stdio: 'ignore' })
  t.teardown(() => { dnsmasq.kill('SIGKILL') })

  const toml = `${RAFT_TOML(3)}\n[dns]\nlisten = "127.0.0.1:0"\nupstream = ["127.0.0.1:${upstreamPort}"]\n`
  const cluster = await Cluster.create(toml)
  t.teardown(async () => { await cluster.destroy() })
  const a0 = await cluster.add('a0')
  await a0.start(['init'])
  const seed = a0.ready!.node.addrs.find(a => a.includes('/quic-v1'))!
  const a1 = await cluster.add('a1')
  await a1.start(['join', seed, '--token', a0.ready!.token])
  const a2 = await cluster.add('a2', '[labels]\nrole = "svc"\n[capsules]\nallow_host_network = true\n')
  await a2.start(['join', seed, '--token', a0.ready!.token])
  const agents = [a0, a1, a2]
  const dnsOf = (a: AgentProcess): string => (a.ready as unknown as { dns: string }).dns
  t.ok(agents.every(a => /^127\.0\.0\.1:\d+$/.test(dnsOf(a))), `every agent serves DNS (${agents.map(dnsOf).join(', ')})`)
  t.ok(await waitFor(async () => (await a0.status())?.members.filter(m => m.state === 'alive' && m.role === 'server').length === 3, 60_000, 500) >= 0, 'three voters')
  t.ok(await agreedLeader(agents, 90_000), 'one leader')

  // Bad input: one clear line, exit 2.
  const bad = await a0.cli(['run', 'bolt.local/busybox:demo', '--check', 'http:'])
  t.equal(bad.code, 2, '--check http: is a usage error')
  t.match(bad.stderr.trim(), /^bolt-agent: --check http:: no path \(expected http:\/healthz or http:8080\/healthz\)$/)

  // A host-network capsule with a declared port, on a2, with an exec check.
  const port = await freePort()
  const spec = {
    name: 'web',
    image: 'bolt.local/busybox:demo',
    args: ['/bin/sh', '-c', `echo up > /tmp/ok; ${untilStopped()}`],
    resources: { cpu: 0.1, memoryBytes: 32 * 1024 * 1024 },
    on: { role: 'svc' },
    // Host network: the agents share one network namespace here, and the
    // catalog's port is the declared one (bridge capsules: test/agent/network.test.ts).
    network: 'host',
    ports: [{ container: port }],
    health: { check: { kind: 'exec', command: 'test -f /tmp/ok' }, intervalMs: 500, timeoutMs: 5000, unhealthyThreshold: 2 }
  }
  const created = await kv(await apiOf(a1), 'POST', '/v1/capsules', spec, 30_000)
  t.equal(created.status, 200, `created (${JSON.stringify(created.body)})`)

  const healthyIn = async (a: AgentProcess): Promise<boolean> => (await services(a)).find(s => s.name === 'web')?.instances.some(i => i.health === 'healthy') === true
  t.ok(await waitFor(async () => await healthyIn(a0), 120_000, 500) >= 0, 'web enters the catalog, healthy')
  const svc = (await services(a0)).find(s => s.name === 'web')
  t.same(svc?.instances.map(i => ({ node: i.node, ports: i.ports })), [{ node: a2.id, ports: [{ host: port, container: port, proto: 'tcp' }] }], 'the entry names the node and its host port')
  const ps = JSON.parse((await a0.cli(['ps', '--json'])).stdout) as Array<{ name: string, health: string | null }>
  t.equal(ps.find(r => r.name === 'web')?.health, 'healthy', 'ps shows the health')
  const inspect = JSON.parse((await a1.cli(['inspect', 'web', '--json'])).stdout) as { instances: Array<{ address: string, health: string }> }
  t.same(inspect.instances.map(i => [i.address, i.health]), [['127.0.0.1', 'healthy']], 'inspect shows address and health')

  // dig against another agent's DNS: A, SRV (UDP and TCP), NXDOMAIN, forwarded.
  const dns = dnsOf(a1)
  t.equal((await dig(dns, ['+short', 'web.service.bolt', 'A'])).trim(), '127.0.0.1', 'A record')
  t.match(await dig(dns, ['+short', 'web.service.bolt', 'SRV']), new RegExp(`^1 1 ${port} 7f000001\\.addr\\.bolt\\.$`, 'm'), 'SRV record with the host port')
  t.match(await dig(dns, ['+tcp', '+short', 'web.service.bolt', 'SRV']), new RegExp(`^1 1 ${port} `, 'm'), 'SRV over TCP')
  t.match(await dig(dns, ['nope.service.bolt', 'A']), /status: NXDOMAIN/, 'unknown .bolt name: NXDOMAIN')
  t.equal((await dig(dns, ['+short', 'outside.example.test', 'A'])).trim(), '192.0.2.77', 'a name outside .bolt is forwarded')

  // exec through another agent: the check starts failing.
  const rmOk = await a0.cli(['exec', 'web', '--', '/bin/busybox', 'rm', '/tmp/ok'])
  t.equal(rmOk.code, 0, `exec through a0 runs on a2 (${rmOk.stderr.trim()})`)
  const failing = await a0.cli(['exec', 'web', '--', '/bin/sh', '-c', 'echo out; echo err >&2; exit 3'])
  t.same([failing.code, failing.stdout, failing.stderr.replace(/^\{.*\n/gm, '')], [3, 'out\n', 'err\n'], 'exec passes output and exit code through')
  const gone = await waitFor(async () => !(await healthyIn(a1)) && (await dig(dns, ['web.service.bolt', 'A'])).includes('NXDOMAIN'), 30_000, 200)
  t.ok(gone >= 0, `a failing check takes it out of services and DNS (${gone} ms; interval 500 ms x threshold 2, plus Raft)`)
  t.equal((await services(a1)).find(s => s.name === 'web'), undefined, 'no entry left for web')
  t.equal((JSON.parse((await a0.cli(['ps', '--json'])).stdout) as Array<{ name: string, health: string | null }>).find(r => r.name === 'web')?.health, 'unhealthy', 'ps shows unhealthy')

  t.equal((await a1.cli(['exec', 'web', '--', '/bin/sh', '-c', 'echo up > /tmp/ok'])).code, 0)
  t.ok(await waitFor(async () => await healthyIn(a1) && (await dig(dns, ['+short', 'web.service.bolt', 'A'])).trim() === '127.0.0.1', 30_000, 200) >= 0, 'passing again brings it back')

  // kill -9 the node running it: once it is marked dead, its entries leave.
  const leader = await agreedLeader(agents, 30_000)
  const survivor = leader?.leader === a0.id ? a0 : a1
  await a2.kill9()
  t.ok(await waitFor(async () => (await survivor.status())?.members.find(m => m.id === a2.id)?.state === 'dead', 60_000, 500) >= 0, 'a2 is marked dead')
  t.ok(await waitFor(async () => (await services(survivor)).find(s => s.name === 'web') === undefined && (await dig(dnsOf(survivor), ['web.service.bolt', 'A'])).includes('NXDOMAIN'), 30_000, 300) >= 0, 'its entries leave the catalog and DNS')
})
