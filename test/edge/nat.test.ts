// Issue "Edge reach", on a network of namespaces: an agent behind NAT joins
// with the ordinary `join`, is reachable for the cluster's protocols through
// a relay, and comes back by itself after its link is cut and restored.
import t from 'tap'
import { waitFor, type StatusLike } from '../helpers/harness.js'
import { addrOf, NetLab, netnsUnavailable, NsAgent, sh, tempRoot } from './netlab.js'

/**
 * The push-pull interval here, and the must-show bound for coming back.
 * Coming back takes: the wait for the next reconnect round (half an
 * interval), the transport's handshake retries (a dial started during the
 * cut resends its first packet after 1, 2, 4 s: up to ~2-3 s of silence after
 * the link returns), and a few hundred ms of gossip. FAST_TOML's 5 s would put
 * the bound at the transport's retry gap; 10 s keeps the test about the
 * protocol (the profiles use 30 s lan, 60 s wan, 120 s edge).
 */
const PUSH_PULL_MS = 10_000
/** Default cut length, see the cut test; BOLT_EDGE_CUT_MS overrides. */
const DEFAULT_CUT_MS = 65_000

/** How the agent whose status this is reaches member `id` now (status JSON's `connection`). */
function connectionTo (s: StatusLike | undefined, id: string): string | undefined {
  return (s?.members.find(m => m.id === id) as { connection?: string } | undefined)?.connection
}

/**
 * When this agent's log first shows each of `names` alive again at or after
 * `since` (pino JSON lines: "member joined" after dead, "member alive" after
 * suspect); `undefined` for a name it never shows alive.
 */
function firstRevivals (lines: string[], since: number, names: string[]): Array<number | undefined> {
  const first = new Map<string, number>()
  for (const l of lines) {
    let e: { time?: number, msg?: string, name?: string }
    try { e = JSON.parse(l) as typeof e } catch { continue }
    if (e.time === undefined || e.time < since || e.name === undefined || first.has(e.name)) continue
    if (e.msg === 'member joined' || e.msg === 'member alive') first.set(e.name, e.time)
  }
  return names.map(n => first.get(n))
}

/** Log lines from a second before `at` on, as "+ms msg name(incarnation)" relative to `at`, for diagnosis. */
function timeline (lines: string[], at: number): string {
  const out: string[] = []
  for (const l of lines) {
    let e: { time?: number, msg?: string, name?: string, incarnation?: number }
    try { e = JSON.parse(l) as typeof e } catch { continue }
    if (e.time === undefined || e.time < at - 1000) continue
    out.push(`${e.time >= at ? '+' : ''}${e.time - at} ${e.msg ?? ''} ${e.name ?? ''}${e.incarnation !== undefined ? `(${e.incarnation})` : ''}`)
  }
  return out.join('; ')
}

const why = await netnsUnavailable()
if (why !== undefined) {
  t.plan(0, `edge NAT tests need network namespaces: ${why}`)
} else {
  t.test('agents behind NAT join, are seen alive by all, and survive a cut link', async t => {
    const lab = await NetLab.create()
    const { root, cleanup } = await tempRoot()
    const agents: NsAgent[] = []
    t.teardown(async () => {
      await Promise.all(agents.map(async a => { await a.stop().catch(() => {}) }))
      await lab.destroy()
      await cleanup()
    })
    const s1 = await lab.lanHost('s1')
    const s2 = await lab.lanHost('s2')
    // The NATed agent may open connections to a0 only: a1 and it can reach
    // each other only through a0's relay.
    const n = await lab.natHost('n', { reachOnly: [s1.addr] })
    const m = await lab.natHost('m', { reachOnly: [s1.addr] })

    const pp = { pushPullMs: PUSH_PULL_MS }
    const a0 = await NsAgent.create(root, 'a0', s1, '', pp)
    const a1 = await NsAgent.create(root, 'a1', s2, '', pp)
    const edge = await NsAgent.create(root, 'edge', n, 'profile = "edge"\n', pp)
    const edge2 = await NsAgent.create(root, 'edge2', m, '', pp)
    agents.push(a0, a1, edge, edge2)
    await a0.start(['init'])
    const token = a0.ready!.token
    await a1.start(['join', addrOf(a0), '--token', token])
    await Promise.all([edge.start(['join', addrOf(a0), '--token', token]), edge2.start(['join', addrOf(a0, 'tcp'), '--token', token])])

    await t.rejects(sh('ip', ['-n', s2.ns, 'route', 'get', n.addr]), 'the members have no route to the NATed agent')

    const sees = (s: StatusLike | undefined, id: string, state: string): boolean => s?.members.find(m => m.id === id)?.state === state
    const allAlive = async (): Promise<boolean> => {
      for (const a of agents) {
        const s = await a.status()
        if (s === undefined || s.members.filter(m => m.state === 'alive').length !== agents.length) return false
      }
      return true
    }
    const formed = await waitFor(allAlive, 30_000, 500)
    // Two NATed agents, a member that neither can dial: all pairs but those with a0 go through a0's relay.
    t.ok(formed >= 0, `all four see four members alive (took ${formed} ms)`)
    if (formed < 0) {
      for (const a of agents) t.comment(a.name, JSON.stringify(await a.status()), a.stderrTail.slice(-8).join('\n'))
      return
    }
    // Its relay slot may come a moment after the members see it alive; then its address update is gossiped.
    let edgeAddrs: string[] = []
    const relayed = await waitFor(async () => {
      edgeAddrs = (await a1.status())?.members.find(m => m.id === edge.id)?.addrs ?? []
      return edgeAddrs.some(a => a.includes('/p2p-circuit/p2p/' + edge.id))
    }, 20_000, 500)
    t.ok(relayed >= 0, `the members gossip a relayed address for it (${edgeAddrs.join(' ')})`)
    t.ok(edgeAddrs.every(a => a.includes('/p2p-circuit') || a.includes(n.addr)), 'and only its own or relayed addresses')

    await t.test('cut its link, restore it: alive again within one push-pull interval, without a restart', async t => {
      await lab.cut(n.router)
      const cutAt = Date.now()
      const dead = await waitFor(async () => sees(await a0.status(), edge.id, 'dead') && sees(await a1.status(), edge.id, 'dead'), 30_000, 500)
      t.ok(dead >= 0, `the members declare it dead while cut (after ${dead} ms)`)
      // The issue's cut is two minutes (BOLT_EDGE_CUT_MS=120000). The default
      // outlasts every timer a cut can run out — QUIC idle timeout (10 s),
      // libp2p's connection monitor, gossip to the dead (30 s lan, 60 s
      // edge) — so connections and the relay slot are gone, as after two minutes.
      const cutMs = Number(process.env.BOLT_EDGE_CUT_MS ?? DEFAULT_CUT_MS)
      if (cutMs > Date.now() - cutAt) await new Promise(resolve => setTimeout(resolve, cutMs - (Date.now() - cutAt)))
      await lab.restore(n.router)
      const restoredAt = Date.now()
      const back = await waitFor(allAlive, 30_000, 500)
      t.ok(back >= 0, `all see all alive again after the link returns (polled: ${back} ms)`)
      t.equal(edge.proc?.exitCode, null, 'the same process: no restart')
      if (back < 0) {
        for (const a of agents) t.comment(a.name, JSON.stringify(await a.status()), a.stderrTail.slice(-8).join('\n'))
        return
      }
      // When the members saw it alive again, and it them, from each agent's
      // own log (the polling above runs four CLI processes per round and is
      // coarser). A suspicion raised and refuted later is not counted: with
      // these fast timers (150 ms probe timeout) the first probe over a fresh
      // relayed connection may miss.
      const others = agents.filter(a => a !== edge)
      const seenAt = [
        ...others.map(a => firstRevivals(a.stderrTail, restoredAt, [edge.name])[0]),
        ...firstRevivals(edge.stderrTail, restoredAt, others.map(a => a.name))
      ]
      const recovery = seenAt.some(x => x === undefined) ? Number.POSITIVE_INFINITY : Math.max(...seenAt.map(x => x ?? 0)) - restoredAt
      t.ok(recovery <= PUSH_PULL_MS, `the members logged it alive again, and it them, ${recovery} ms after the link returned (one push-pull interval: ${PUSH_PULL_MS} ms)`)
      if (recovery > PUSH_PULL_MS || process.env.BOLT_EDGE_TIMELINE === '1') for (const a of agents) t.comment(a.name, timeline(a.stderrTail, restoredAt))
      // Members other than a0 reach it only through a0's relay: its slot is back.
      const relayed = await waitFor(async () => connectionTo(await a1.status(), edge.id) === 'relayed', 20_000, 500)
      t.ok(relayed >= 0, 'a1 reaches it through the relay again (its relay slot came back)')
    })
  })
}
