// Issue #23, discovery from inside a capsule: two real agents, each in its
// own network namespace of a lab with its own address, runc, busybox. A
// `web` capsule (busybox httpd, a dynamic published port, an http check)
// runs on one node; a client capsule on the other resolves
// `web.service.bolt` (A and SRV) through its resolv.conf, which points at
// its node's bridge address, and fetches a page through the published port
// with busybox nc. Names outside .bolt are forwarded to the node's
// resolvers; the bridge's DNS port is not open to other machines; after an
// agent restart the adopted client resolves again.
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { AgentProcess, killCapsules, waitFor, untilStopped } from '../helpers/harness.js'
import { RAFT_TOML } from '../../scenarios/_raft.js'
import { NetLab, netnsUnavailable, sh, tempRoot, type Host } from '../edge/netlab.js'
import { netnsPrefix } from '../../native/index.js'
import { busyboxPath, DEMO_REF } from '../../agent/demo-image.js'

interface Ps { name: string, capsule: string, node: string | null, address: string | null, ports: Array<{ host: number, container: number, proto: string }>, state: string, health: string | null }

const haveRunc = existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc')
const UPSTREAM_PORT = 5353

/** An agent in a lab namespace (nsenter --net keeps the host's mounts, which runc needs). */
async function labAgent (root: string, name: string, host: Host, extraToml: string): Promise<AgentProcess> {
  const dataDir = join(root, name)
  const configFile = join(root, `${name}.toml`)
  await writeFile(configFile, `name = "${name}"\nlisten = ["/ip4/${host.addr}/udp/0/quic-v1", "/ip4/${host.addr}/tcp/0"]\nmdns = false\n${extraToml}\n${RAFT_TOML(1)}`)
  return new AgentProcess(name, dataDir, configFile, ['nsenter', `--net=/run/netns/${host.ns}`])
}

const inNs = async (ns: string, cmd: string, args: string[]): Promise<string> => await sh('nsenter', [`--net=/run/netns/${ns}`, cmd, ...args])

t.test('a capsule resolves NAME.service.bolt from its own namespace and reaches it on another node', { timeout: 600_000 }, async t => {
  const why = process.getuid?.() !== 0 ? 'needs root' : !haveRunc ? 'needs runc' : busyboxPath() === undefined ? 'needs busybox-static' : !existsSync('/usr/bin/dig') || !existsSync('/usr/sbin/dnsmasq') ? 'needs dig and dnsmasq' : await netnsUnavailable()
  if (why !== undefined) { t.comment(`skipped: ${why}`); return }
  const lab = await NetLab.create({ lanPrefix: '10.78.0' })
  const { root, cleanup } = await tempRoot()
  const agents: AgentProcess[] = []
  let dnsmasq: ReturnType<typeof spawn> | undefined
  t.teardown(async () => {
    dnsmasq?.kill('SIGKILL')
    for (const a of agents) await a.stop().catch(() => {})
    for (const a of agents) {
      await killCapsules(a.dataDir).catch(() => {})
      const prefix = netnsPrefix(join(a.dataDir, 'runtime'))
      for (const n of (await sh('ip', ['netns', 'list']).catch(() => '')).split('\n').map(l => l.split(' ')[0] ?? '').filter(n => n.startsWith(prefix + '-'))) await sh('ip', ['netns', 'del', n]).catch(() => {})
    }
    await lab.destroy()
    await cleanup()
  })
  const h0 = await lab.lanHost('d0')
  const h1 = await lab.lanHost('d1')
  // The client node's "host resolver": a dnsmasq on its loopback answering one name from a hosts file (no traffic off the machine).
  await writeFile(join(root, 'hosts'), '192.0.2.77 outside.example.test\n')
  dnsmasq = spawn('nsenter', [`--net=/run/netns/${h1.ns}`, '/usr/sbin/dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', `--addn-hosts=${join(root, 'hosts')}`, `--port=${UPSTREAM_PORT}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--pid-file=', '--user=root', '--conf-file=/dev/null'], { stdio: 'ignore' })
  const a0 = await labAgent(root, 'd0', h0, '[labels]\nrole = "web"\n')
  const a1 = await labAgent(root, 'd1', h1, `[labels]\nrole = "client"\n[dns]\nupstream = ["127.0.0.1:${UPSTREAM_PORT}"]\n`)
  agents.push(a0, a1)
  await a0.start(['init'], 60_000)
  const seed = a0.ready!.node.addrs.find(a => a.includes('/quic-v1') && a.includes(h0.addr))!
  await a1.start(['join', seed, '--token', a0.ready!.token], 60_000)
  const ps = async (): Promise<Ps[]> => { const r = await a0.cli(['ps', '--json'], 20_000); return r.code === 0 ? JSON.parse(r.stdout) as Ps[] : [] }
  t.ok(await waitFor(async () => (await a0.status())?.members.filter(m => m.state === 'alive').length === 2, 60_000, 500) >= 0, 'two alive members')
  let subnets: Record<string, string> = {}
  const gossiped = await waitFor(async () => {
    const members = ((await a0.status()) as unknown as { members: Array<{ id: string, network?: { subnet: string } }> } | undefined)?.members ?? []
    subnets = Object.fromEntries(members.map(m => [m.id, m.network?.subnet ?? '']))
    return members.length === 2 && Object.values(subnets).every(s => s !== '')
  }, 60_000, 500)
  t.ok(gossiped >= 0, `both subnets gossiped (${JSON.stringify(subnets)})`)

  const web = await a0.cli(['run', DEMO_REF, '--name', 'web', '--on', 'role=web', '-p', '80', '--check', 'http:/hostname', '--memory', '32M', '--', '/bin/busybox', 'httpd', '-f', '-p', '80', '-h', '/etc'], 20_000)
  t.equal(web.code, 0, `run web exits 0 ${web.stderr.trim()}`)
  const client = await a0.cli(['run', DEMO_REF, '--name', 'client', '--on', 'role=client', '--memory', '16M', '--', '/bin/sh', '-c', untilStopped()], 20_000)
  t.equal(client.code, 0, `run client exits 0 ${client.stderr.trim()}`)
  let rows: Ps[] = []
  const up = await waitFor(async () => {
    rows = await ps()
    return rows.find(r => r.name === 'web.g1' || r.capsule === 'web')?.health === 'healthy' && rows.find(r => r.capsule === 'client')?.state === 'running'
  }, 180_000, 500)
  t.ok(up >= 0, `web healthy, client running (${JSON.stringify(rows.map(r => [r.name, r.state, r.health, r.node]))})`)
  const w = rows.find(r => r.capsule === 'web')
  t.equal(w?.node, a0.id, 'web runs on d0')
  t.equal(rows.find(r => r.capsule === 'client')?.node, a1.id, 'client runs on d1')
  const hostPort = w?.ports[0]?.host ?? 0
  t.ok(hostPort >= 20000 && hostPort <= 32767 && w?.ports[0]?.container === 80, `a dynamic host port (${JSON.stringify(w?.ports)})`)
  t.equal(w?.address, h0.addr, 'ps gives d0\'s address')

  const execIn = async (argv: string[]): Promise<{ code: number, stdout: string, stderr: string }> => await a1.cli(['exec', 'client', '--', ...argv], 30_000)
  const gateway = (subnets[a1.id] ?? '').replace(/\d+\/\d+$/, '1')
  // Traffic that stays on the node moves at the bridge's MTU; what leaves it (the fetch below, to d0) at 1500.
  const clientNs = (await sh('ip', ['netns', 'list'])).split('\n').map(l => l.split(' ')[0] ?? '').find(n => n.startsWith(netnsPrefix(join(a1.dataDir, 'runtime')) + '-')) ?? ''
  t.match(await sh('ip', ['-n', clientNs, '-o', 'link', 'show', 'eth0']), /mtu 65535 /, `the client's eth0 has the bridge's MTU (${clientNs})`)
  t.match(await sh('ip', ['-n', clientNs, 'route', 'show', 'default']), /mtu 1500/, 'its default route keeps 1500')
  const resolv = await execIn(['/bin/cat', '/etc/resolv.conf'])
  t.match(resolv.stdout, new RegExp(`^nameserver ${gateway.replaceAll('.', '\\.')}$`, 'm'), `the client's resolv.conf points at its bridge address ${gateway}`)

  // From inside the client capsule's namespace, through its resolv.conf (busybox nslookup reads it).
  let a = { code: -1, stdout: '', stderr: '' }
  const resolved = await waitFor(async () => { a = await execIn(['/bin/busybox', 'nslookup', 'web.service.bolt']); return a.stdout.includes(`Address: ${h0.addr}`) }, 30_000, 500)
  t.ok(resolved >= 0, `web.service.bolt resolves to d0's address inside the client (${a.stdout.trim().replace(/\s+/g, ' ')} ${a.stderr.trim()})`)
  const srv = await execIn(['/bin/busybox', 'nslookup', '-type=SRV', 'web.service.bolt'])
  t.match(srv.stdout, new RegExp(`web\\.service\\.bolt\\s+service = 1 1 ${hostPort} [0-9a-f]{8}\\.addr\\.bolt`), `SRV gives the published port (${srv.stdout.trim().replace(/\s+/g, ' ')})`)

  // Resolve and fetch in one go, as a program in the capsule would: the name, then the port from SRV, then nc.
  const script = [
    'set -e',
    "addr=$(busybox nslookup web.service.bolt | sed -n 's/^Address: *\\([0-9.]*\\)$/\\1/p' | tail -n 1)",
    "port=$(busybox nslookup -type=SRV web.service.bolt | sed -n 's/.*service = [0-9]* [0-9]* \\([0-9]*\\) .*/\\1/p' | head -n 1)",
    'printf "GET /hostname HTTP/1.0\\r\\nHost: web\\r\\n\\r\\n" | busybox nc -w 5 "$addr" "$port"'
  ].join('\n')
  const page = await execIn(['/bin/sh', '-c', script])
  t.equal(page.code, 0, `the fetch exits 0 (${page.stderr.trim()})`)
  t.match(page.stdout, /^HTTP\/1\.[01] 200 OK/, 'a 200 through the published port')
  t.match(page.stdout, /web\.g\d+/, 'and the page comes from the web capsule')

  // Other names: NXDOMAIN under .bolt, anything else forwarded to the node's resolvers.
  const nx = await execIn(['/bin/busybox', 'nslookup', 'nope.service.bolt'])
  t.match(nx.stdout + nx.stderr, /NXDOMAIN/, 'an unknown .bolt name is NXDOMAIN')
  const fwd = await execIn(['/bin/busybox', 'nslookup', 'outside.example.test'])
  t.match(fwd.stdout, /Address: 192\.0\.2\.77/, `a name outside .bolt is forwarded (${fwd.stdout.trim().replace(/\s+/g, ' ')})`)

  // The client's node restarts (kill -9): its agent adopts the running client and serves the bridge's DNS again.
  await a1.kill9()
  await a1.start(['start'], 60_000)
  let again = { code: -1, stdout: '', stderr: '' }
  const back = await waitFor(async () => { again = await execIn(['/bin/busybox', 'nslookup', 'web.service.bolt']); return again.stdout.includes(`Address: ${h0.addr}`) }, 60_000, 500)
  t.ok(back >= 0, `after its node's agent restarts, the running client still resolves web.service.bolt (${again.stdout.trim().replace(/\s+/g, ' ')} ${again.stderr.trim()})`)

  // The bridge's DNS answers its node (loopback) but not another machine that routes to it.
  t.equal((await inNs(h1.ns, 'dig', [`@${gateway}`, '+short', '+time=2', '+tries=1', 'web.service.bolt', 'A'])).trim(), h0.addr, 'the node itself may ask the bridge address')
  await lab.ip(h0.ns, 'route', 'add', subnets[a1.id] ?? '', 'via', h1.addr)
  const outside = await inNs(h0.ns, 'dig', [`@${gateway}`, '+short', '+time=2', '+tries=1', 'web.service.bolt', 'A']).catch((err: { stdout?: string }) => err.stdout ?? '')
  t.notMatch(outside, new RegExp(h0.addr.replaceAll('.', '\\.')), `another machine gets no answer from the bridge's DNS (${outside.trim().replace(/\s+/g, ' ')})`)
})
