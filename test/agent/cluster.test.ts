// Issue "A cluster that forms…": real agent processes on loopback.
import t from 'tap'
import { createLibp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { Cluster, seedAddr, waitFor, type AgentProcess, type StatusLike } from '../helpers/harness.js'
import { EPHEMERAL_LISTEN, transportModules } from '../../quic/transports.js'
import { KAD_PROTOCOL } from '../../p2p/node.js'
import { LAN, suspicionBoundMs } from '../../p2p/membership/index.js'

const allSee = async (agents: AgentProcess[], n: number, pred: (s: StatusLike) => boolean = () => true): Promise<boolean> => {
  for (const a of agents) {
    const s = await a.status()
    if (s === undefined || s.members.filter(m => m.state === 'alive').length !== n || !pred(s)) return false
  }
  return true
}

t.test('a cluster forms over QUIC, refuses wrong tokens, detects death and leave', async t => {
  const cluster = await Cluster.create()
  t.teardown(async () => { await cluster.destroy() })
  const agents = await cluster.form(3, 'quic')
  const [a0, a1, a2] = agents as [AgentProcess, AgentProcess, AgentProcess]
  t.match(a0.ready?.join, /^bolt-agent join \/ip4\/127\.0\.0\.1\/udp\/\d+\/quic-v1\/p2p\/12D3KooW\S+ --token bolt1_/, '`token --json` gives the join command')

  const formed = await waitFor(async () => await allSee(agents, 3), 15_000)
  t.ok(formed >= 0, `all three list 3 members alive within 15 s (took ${formed} ms)`)

  await t.test('a wrong token is refused over QUIC and TCP', async t => {
    for (const transport of ['quic', 'tcp'] as const) {
      const bad = await cluster.add(`bad-${transport}`)
      const token = a0.ready!.token.replace(/_([0-9a-f]{64})$/, (_m, s: string) => '_' + (s[0] === 'a' ? 'b' : 'a') + s.slice(1))
      const err = await bad.start(['join', seedAddr(a0, transport), '--token', token], 20_000).then(() => undefined, (e: Error) => e)
      t.ok(err, `${transport}: join fails`)
      t.equal(await bad.exited, 1, `${transport}: exit code 1`)
      const line = bad.stderrTail.filter(l => l.startsWith('bolt-agent:')).pop() ?? ''
      t.match(line, /join failed: 127\.0\.0\.1 rejected the token \(check --token\)/, `${transport}: one clear line`)
      t.notMatch(bad.stderrTail.join('\n'), /\n\s+at /, 'no stack trace')
    }
  })

  await t.test('a plain libp2p node reaches no cluster protocol', async t => {
    const plain = await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
    t.teardown(async () => { await plain.stop() })
    for (const a of agents) {
      for (const transport of ['quic', 'tcp'] as const) {
        for (const proto of ['/bolt/swim/1', KAD_PROTOCOL]) {
          const answered = await (async () => {
            try {
              const s = await plain.dialProtocol(multiaddr(seedAddr(a, transport)), proto, { signal: AbortSignal.timeout(5000) })
              const lp = lpStream(s)
              await lp.write(new Uint8Array([0xa0]))
              await lp.read({ signal: AbortSignal.timeout(5000) })
              return true
            } catch { return false }
          })()
          t.notOk(answered, `${a.name} ${transport} ${proto}: refused`)
        }
      }
    }
  })

  await t.test('kill -9: dead within the bound; start brings it back with a higher incarnation', async t => {
    const id = a2.id
    const before = (await a0.status())?.members.find(m => m.id === id)?.incarnation ?? 0
    await a2.kill9()
    // FAST_TOML: probe 300 ms, suspicion mult 3 → the bound is one probe
    // interval plus a lone suspecter's maximum suspicion time. Polling runs a
    // CLI process per status, so allow a few seconds of slack on a busy machine.
    const bound = suspicionBoundMs({ probeIntervalMs: 300, suspicionMult: 3, suspicionMaxTimeoutMult: LAN.suspicionMaxTimeoutMult }, 3)
    const dead = await waitFor(async () => {
      for (const a of [a0, a1]) {
        const s = await a.status()
        if (s?.members.find(m => m.id === id)?.state !== 'dead') return false
      }
      return true
    }, bound + 5000)
    if (dead < 0) t.comment(JSON.stringify([await a0.status(), await a1.status()].map(s => s?.members.map(m => `${m.name}:${m.state}:${m.incarnation}`))))
    t.ok(dead >= 0, `both others mark it dead (after ${dead} ms; bound ${bound} ms + polling slack)`)
    const back = await a2.start(['start'])
    t.equal(back.node.id, id, 'same peer id after restart')
    const alive = await waitFor(async () => {
      const m = (await a0.status())?.members.find(m => m.id === id)
      return m?.state === 'alive' && (m.incarnation ?? 0) > before
    }, 15_000)
    t.ok(alive >= 0, 'alive again with a higher incarnation')
  })

  await t.test('leave: the others report left, not dead', async t => {
    // The restarted a2 must know a1 first: like memberlist, a member never
    // seen alive is not added from news of its leaving.
    t.ok(await waitFor(async () => await allSee(agents, 3), 15_000) >= 0, 'all three see each other alive first')
    const id = a1.id
    const r = await a1.cli(['leave'])
    t.equal(r.code, 0, 'leave exits 0')
    t.equal(await a1.exited, 0, 'the agent stops cleanly')
    const left = await waitFor(async () => {
      for (const a of [a0, a2]) {
        if ((await a.status())?.members.find(m => m.id === id)?.state !== 'left') return false
      }
      return true
    }, 15_000)
    if (left < 0) t.comment(JSON.stringify([await a0.status(), await a2.status()].map(s => s?.members.map(m => `${m.name}:${m.state}:${m.incarnation}`))))
    t.ok(left >= 0, 'both others show it left')
  })
})
