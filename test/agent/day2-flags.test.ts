// Issue 24, nodes: the flags given at `init`/`join` persist, so `start` runs
// the node as it was set up (labels above all: a capsule placed by them stays
// placed); `join` takes HOST:PORT and quic://HOST:PORT without a peer id.
// Real agents, real runc, the built-in demo image.
import t from 'tap'
import { existsSync } from 'node:fs'
import { Cluster, seedAddr, waitFor, untilStopped, type AgentProcess } from '../helpers/harness.js'
import { RAFT_TOML } from '../../scenarios/_raft.js'
import { joinAddrs } from '../../agent/join.js'

const IMAGE = 'bolt.local/busybox:demo'
const ok = (existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc')) && process.getuid?.() === 0 && existsSync('/bin/busybox')

interface Ps { name: string, node: string | null, state: string }
async function ps (a: AgentProcess): Promise<Ps[]> {
  const r = await a.cli(['ps', '--json'], 15_000)
  return r.code === 0 ? JSON.parse(r.stdout) as Ps[] : []
}

t.test('join addresses: HOST:PORT, tcp://, quic://, multiaddrs', async t => {
  t.same(joinAddrs('127.0.0.1:7946'), ['/ip4/127.0.0.1/tcp/7946', '/ip4/127.0.0.1/udp/7946/quic-v1'])
  t.same(joinAddrs('quic://10.0.0.5:7946'), ['/ip4/10.0.0.5/udp/7946/quic-v1'])
  t.same(joinAddrs('tcp://node-a.lan:7000'), ['/dns/node-a.lan/tcp/7000'])
  t.same(joinAddrs('[::1]:7946'), ['/ip6/::1/tcp/7946', '/ip6/::1/udp/7946/quic-v1'])
  t.same(joinAddrs('/ip4/1.2.3.4/tcp/1'), ['/ip4/1.2.3.4/tcp/1'])
  t.same(joinAddrs('host:99999'), ['host:99999'], 'a bad port is left for the parser to refuse')
})

t.test('flags persist across start; join HOST:PORT', { skip: ok ? false : 'needs root, runc and busybox-static', timeout: 300_000 }, async t => {
  const cluster = await Cluster.create(RAFT_TOML(1))
  t.teardown(async () => { await cluster.destroy() })
  const a0 = await cluster.add('f0')
  await a0.start(['init', '--label', 'zone=eu'])
  const r = await a0.cli(['run', IMAGE, '--name', 'eu-app', '--on', 'zone=eu', '--network', 'none', '--memory', '16M', '--', '/bin/sh', '-c', untilStopped()], 60_000)
  t.equal(r.code, 0, `placed by the label given to init (${r.stderr.trim()})`)
  t.ok(await waitFor(async () => (await ps(a0)).find(x => x.name === 'eu-app')?.state === 'running', 60_000, 500) >= 0, 'eu-app runs')

  await a0.stop()
  await a0.start(['start'])
  const st = await a0.status() as unknown as { members: Array<{ id: string, labels: Record<string, string> }> }
  t.same(st.members.find(m => m.id === a0.id)?.labels, { zone: 'eu' }, 'start without --label keeps zone=eu')
  t.ok(await waitFor(async () => (await ps(a0)).find(x => x.name === 'eu-app')?.state === 'running', 60_000, 500) >= 0, 'eu-app is running again after start')
  t.equal((await ps(a0)).find(x => x.name === 'eu-app')?.node, a0.id, 'on the same node')
  const again = await a0.cli(['run', IMAGE, '--name', 'eu-two', '--on', 'zone=eu', '--network', 'none', '--memory', '16M', '--', '/bin/sh', '-c', untilStopped()], 60_000)
  t.equal(again.code, 0, `a new capsule for zone=eu is placed after start (${again.stderr.trim()})`)

  const port = (transport: 'tcp' | 'quic'): string => /\/(?:tcp|udp)\/(\d+)/.exec(seedAddr(a0, transport))?.[1] ?? ''
  const a1 = await cluster.add('f1')
  const j1 = await a1.start(['join', `127.0.0.1:${port('tcp')}`, '--token', a0.ready!.token])
  t.ok(j1.node.id !== '', 'join 127.0.0.1:PORT --token T works without a peer id')
  const a2 = await cluster.add('f2')
  await a2.start(['join', `quic://127.0.0.1:${port('quic')}`], undefined, { BOLT_TOKEN: a0.ready!.token })
  t.ok(await waitFor(async () => (await a0.status())?.members.filter(m => m.state === 'alive').length === 3, 60_000, 500) >= 0, 'quic://HOST:PORT too: three alive members')
})
