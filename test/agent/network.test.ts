// Issue #23, the network half: two real agents, each in its own network
// namespace of a lab (the bridge, nft table and ip_forward of one never touch
// the host's or the other's), runc, busybox. A published port reaches a
// bridge capsule from both nodes; host ports are scheduled (four replicas,
// one static port, two nodes); rm and an agent restart leave no namespace,
// veth or port forward behind.
import t from 'tap'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { AgentProcess, waitFor, untilStopped } from '../helpers/harness.js'
import { RAFT_TOML } from '../../scenarios/_raft.js'
import { NetLab, netnsUnavailable, sh, tempRoot, type Host } from '../edge/netlab.js'
import { netnsPrefix } from '../../native/index.js'
import { busyboxPath, DEMO_REF } from '../../agent/demo-image.js'

interface Ps { name: string, capsule: string, node: string | null, nodeName: string | null, address: string | null, ports: Array<{ host: number, container: number, proto: string }>, state: string, reason: string | null }

const haveRunc = existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc')

/**
 * An agent in a lab namespace. nsenter --net, not `ip netns exec`: the latter
 * remounts /sys in a new mount namespace, hiding the cgroup mounts runc needs.
 */
async function labAgent (root: string, name: string, host: Host, extraToml = ''): Promise<AgentProcess> {
  const dataDir = join(root, name)
  const configFile = join(root, `${name}.toml`)
  await writeFile(configFile, `name = "${name}"\nlisten = ["/ip4/${host.addr}/udp/0/quic-v1", "/ip4/${host.addr}/tcp/0"]\nmdns = false\n${extraToml}\n${RAFT_TOML(1)}`)
  return new AgentProcess(name, dataDir, configFile, ['nsenter', `--net=/run/netns/${host.ns}`])
}

const inNs = async (ns: string, cmd: string, args: string[], input?: string): Promise<string> => await sh('nsenter', [`--net=/run/netns/${ns}`, cmd, ...args], input)

/** An HTTP GET with busybox nc (busybox wget misbehaves in capsules here); the response, or '' when nothing answers. */
async function httpGet (ns: string, addr: string, port: number, path: string): Promise<string> {
  return await inNs(ns, 'timeout', ['5', 'busybox', 'nc', addr, String(port)], `GET ${path} HTTP/1.0\r\nHost: x\r\n\r\n`).catch(() => '')
}

/** What this agent holds of the network in its namespace: its capsule namespaces, veths, and published ports. */
async function netState (ns: string, prefix: string): Promise<{ netns: string[], veths: string[], ports: string }> {
  const netns = (await sh('ip', ['netns', 'list'])).split('\n').map(l => l.split(' ')[0] ?? '').filter(n => n.startsWith(prefix + '-'))
  const veths = (await inNs(ns, 'ip', ['-o', 'link', 'show', 'type', 'veth']).catch(() => '')).split('\n').map(l => /^\d+:\s+([^@:]+)/.exec(l)?.[1]).filter((x): x is string => x?.startsWith('bv') === true)
  const ports = await inNs(ns, 'nft', ['list', 'map', 'ip', 'bolt_bolt0', 'tcp_ports']).catch(() => '') + await inNs(ns, 'nft', ['list', 'map', 'ip', 'bolt_bolt0', 'udp_ports']).catch(() => '')
  return { netns, veths, ports }
}

t.test('bridge networking and published ports across two nodes', { timeout: 900_000 }, async t => {
  const why = process.getuid?.() !== 0 ? 'needs root' : !haveRunc ? 'needs runc' : busyboxPath() === undefined ? 'needs busybox-static' : await netnsUnavailable()
  if (why !== undefined) { t.comment(`skipped: ${why}`); return }
  const lab = await NetLab.create({ lanPrefix: '10.79.0' })
  const { root, cleanup } = await tempRoot()
  const agents: AgentProcess[] = []
  t.teardown(async () => {
    const { killCapsules } = await import('../helpers/harness.js')
    for (const a of agents) await a.stop().catch(() => {})
    for (const a of agents) {
      await killCapsules(a.dataDir)
      // Namespaces the agents made for capsules (ip netns list is host-wide).
      const prefix = netnsPrefix(join(a.dataDir, 'runtime'))
      for (const n of (await sh('ip', ['netns', 'list']).catch(() => '')).split('\n').map(l => l.split(' ')[0] ?? '').filter(n => n.startsWith(prefix + '-'))) await sh('ip', ['netns', 'del', n]).catch(() => {})
    }
    await lab.destroy()
    await cleanup()
  })
  const h0 = await lab.lanHost('n0')
  const h1 = await lab.lanHost('n1')
  const a0 = await labAgent(root, 'n0', h0)
  const a1 = await labAgent(root, 'n1', h1)
  agents.push(a0, a1)
  await a0.start(['init'], 60_000)
  const seed = a0.ready!.node.addrs.find(a => a.includes('/quic-v1') && a.includes(h0.addr))!
  await a1.start(['join', seed, '--token', a0.ready!.token], 60_000)
  const byId = (id: string | null): { agent: AgentProcess, host: Host } | undefined => id === a0.id ? { agent: a0, host: h0 } : id === a1.id ? { agent: a1, host: h1 } : undefined
  const ps = async (): Promise<Ps[]> => { const r = await a0.cli(['ps', '--json'], 20_000); return r.code === 0 ? JSON.parse(r.stdout) as Ps[] : [] }
  const alive = await waitFor(async () => (await a0.status())?.members.filter(m => m.state === 'alive').length === 2, 60_000, 500)
  t.ok(alive >= 0, 'two alive members')
  // The leader's view of n1's port range and subnet arrives by gossip.
  const gossiped = await waitFor(async () => ((await a0.status()) as unknown as { members: Array<{ network?: { subnet: string } }> } | undefined)?.members.every(m => (m.network?.subnet ?? '') !== '') === true, 60_000, 500)
  t.ok(gossiped >= 0, 'both subnets gossiped')
  const prefixOf = (a: AgentProcess): string => netnsPrefix(join(a.dataDir, 'runtime'))

  await t.test('a bridge capsule answers on its published port, from its node and from the other', async t => {
    const r = await a0.cli(['run', DEMO_REF, '--name', 'web', '-p', '8080:80', '--memory', '32M', '--', '/bin/busybox', 'httpd', '-f', '-p', '80', '-h', '/etc'], 20_000)
    t.equal(r.code, 0, `run exits 0 ${r.stderr.trim()}`)
    let row: Ps | undefined
    const running = await waitFor(async () => { row = (await ps()).find(x => x.name === 'web'); return row?.state === 'running' }, 120_000, 500)
    t.ok(running >= 0, `running (${JSON.stringify(row)})`)
    const where = byId(row?.node ?? null)
    if (where === undefined) return
    t.equal(row?.address, where.host.addr, 'ps gives the node\'s advertised address')
    t.equal(row?.nodeName, where.agent.name, 'and its name')
    t.same(row?.ports, [{ host: 8080, container: 80, proto: 'tcp' }], 'and the published port')
    const other = where.host === h0 ? h1 : h0
    let body = ''
    const local = await waitFor(async () => { body = await httpGet(where.host.ns, '127.0.0.1', 8080, '/hostname'); return body.includes('200 OK') }, 30_000, 500)
    t.ok(local >= 0, `its node reaches it on 127.0.0.1:8080 (${body.slice(0, 60)})`)
    t.match(body, /web\.g\d+/, 'and the page comes from the capsule')
    body = await httpGet(other.ns, where.host.addr, 8080, '/hostname')
    t.match(body, /200 OK[\s\S]*web\.g\d+/, 'the other node reaches it on the node address')
    // The capsule itself has its own address on the bridge and reaches outside through NAT (the other node).
    const state = await netState(where.host.ns, prefixOf(where.agent))
    t.equal(state.netns.length, 1, 'one capsule namespace')
    t.match(state.ports, /8080 : 10\.88\.\d+\.\d+ \. 80/, 'one port forward')

    const rm = await a0.cli(['rm', 'web'])
    t.equal(rm.code, 0, 'rm exits 0')
    let after = state
    const clean = await waitFor(async () => { after = await netState(where.host.ns, prefixOf(where.agent)); return after.netns.length === 0 && after.veths.length === 0 && !after.ports.includes('8080') }, 60_000, 500)
    t.ok(clean >= 0, `after rm no namespace, veth or forward is left (${JSON.stringify(after)})`)
  })

  await t.test('four replicas, one static port, two nodes: two run, two wait with the reason', async t => {
    const args = ['-p', '7777:80/udp', '--memory', '16M', '--', '/bin/sh', '-c', untilStopped()]
    t.equal((await a0.cli(['run', DEMO_REF, '--name', 'pa', ...args])).code, 0)
    t.equal((await a0.cli(['run', DEMO_REF, '--name', 'pb', '--replicas', '3', ...args])).code, 0)
    let rows: Ps[] = []
    const settled = await waitFor(async () => {
      rows = (await ps()).filter(x => x.capsule === 'pa' || x.capsule === 'pb')
      return rows.filter(x => x.state === 'running').length === 2 && rows.filter(x => x.state === 'pending' && x.reason === 'port 7777/udp is taken on every node').length === 2
    }, 120_000, 500)
    t.ok(settled >= 0, `two running, two pending with the reason (${JSON.stringify(rows.map(r => [r.name, r.state, r.reason]))})`)
    const running = rows.filter(x => x.state === 'running')
    t.equal(new Set(running.map(x => x.node)).size, 2, 'one per node')
    t.ok(running.every(x => x.ports.length === 1 && x.ports[0]?.host === 7777 && x.ports[0]?.proto === 'udp'), 'each holds 7777/udp')
    t.equal((await a0.cli(['rm', 'pa'])).code, 0, 'rm pa')
    const moved = await waitFor(async () => {
      rows = (await ps()).filter(x => x.capsule === 'pb')
      return rows.filter(x => x.state === 'running').length === 2 && rows.filter(x => x.state === 'pending').length === 1
    }, 120_000, 500)
    t.ok(moved >= 0, `a pending replica runs once the port is free (${JSON.stringify(rows.map(r => [r.name, r.state, r.reason]))})`)
    t.equal((await a0.cli(['rm', 'pb'])).code, 0, 'rm pb')
  })

  await t.test('an agent restart removes what its capsules left', async t => {
    const r = await a0.cli(['run', DEMO_REF, '--name', 'keep', '-p', '8090:80', '--memory', '16M', '--', '/bin/busybox', 'httpd', '-f', '-p', '80', '-h', '/etc'])
    t.equal(r.code, 0)
    let row: Ps | undefined
    await waitFor(async () => { row = (await ps()).find(x => x.name === 'keep'); return row?.state === 'running' }, 120_000, 500)
    const where = byId(row?.node ?? null)
    t.ok(where, 'keep runs')
    if (where === undefined) return
    const prefix = prefixOf(where.agent)
    const before = await netState(where.host.ns, prefix)
    await where.agent.kill9()
    // What a crash may leave: a namespace of this agent's with no capsule, and a stale port forward.
    await sh('ip', ['netns', 'add', `${prefix}-ghost.g9`])
    await inNs(where.host.ns, 'nft', ['add', 'element', 'ip', 'bolt_bolt0', 'tcp_ports', '{ 9999 : 10.88.255.250 . 80 }'])
    t.match((await netState(where.host.ns, prefix)).ports, /9999/, 'a stale forward is there while the agent is down')
    await where.agent.start(['start'], 60_000)
    let after = before
    const cleaned = await waitFor(async () => { after = await netState(where.host.ns, prefix); return !after.netns.includes(`${prefix}-ghost.g9`) && !after.ports.includes('9999') }, 60_000, 500)
    t.ok(cleaned >= 0, `the orphan namespace and forward are gone after the restart (${JSON.stringify(after)})`)
    // (Capsules of the previous subtest may still have been on their way out when the agent was killed: compare keep's alone.)
    t.same(after.netns.filter(n => n.includes('-keep.g')), before.netns.filter(n => n.includes('-keep.g')), 'the adopted capsule keeps its namespace')
    t.match(after.ports, /8090/, 'and its forward')
    const body = await httpGet(where.host.ns, '127.0.0.1', 8090, '/hostname')
    t.match(body, /200 OK/, 'and still answers')
    t.equal((await a0.cli(['rm', 'keep'])).code, 0, 'rm keep')
    const clean = await waitFor(async () => { after = await netState(where.host.ns, prefix); return after.netns.length === 0 && !after.ports.includes('8090') }, 60_000, 500)
    t.ok(clean >= 0, `nothing left after rm (${JSON.stringify(after)})`)
  })
})
