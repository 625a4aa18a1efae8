// Security issue #21, findings 3 and 6, against real agents: a capsule that
// asks for the host's network or for the gaming profile (the node's input
// and sound devices) is placed only on a node whose config allows it, and
// stays pending with the reason where none does. The policy travels in the
// gossiped member metadata.
import t, { type Test } from 'tap'
import { existsSync } from 'node:fs'
import { Cluster, waitFor, type AgentProcess } from '../helpers/harness.js'
import { RAFT_TOML } from '../../scenarios/_raft.js'
import { busyboxPath, DEMO_REF } from '../../agent/demo-image.js'

interface Ps { name: string, node: string | null, state: string, reason: string | null }
interface Member { id: string, capsules?: { allowHostNetwork: boolean, allowGaming: boolean } }

async function ps (a: AgentProcess): Promise<Ps[]> {
  const r = await a.cli(['ps', '--json'], 15_000)
  return r.code === 0 ? JSON.parse(r.stdout) as Ps[] : []
}

const haveRunc = existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc')
const skip = process.getuid?.() !== 0 || !haveRunc || busyboxPath() === undefined ? 'needs root, runc and busybox' : false

t.test('host networking and gaming are placed only where the node\'s config allows them', { skip }, async t => {
  const cluster = await Cluster.create(RAFT_TOML(1))
  t.teardown(async () => { await cluster.destroy() })
  // No mirror: its fixed port would collide with parallel runs, and nothing here pulls through it.
  const base = '[mirror]\nenabled = false\n'
  const plain = await cluster.add('plain', `${base}[labels]\nzone = "plain"\n`)
  await plain.start(['init'])
  const seed = plain.ready!.node.addrs.find(a => a.includes('/quic-v1'))!
  const games = await cluster.add('games', `${base}[labels]\nzone = "games"\n[capsules]\nallow_host_network = true\nallow_gaming = true\n`)
  await games.start(['join', seed, '--token', plain.ready!.token])

  let members: Member[] = []
  const gossiped = await waitFor(async () => {
    members = ((await plain.status())?.members ?? []) as Member[]
    return members.find(m => m.id === games.id)?.capsules?.allowHostNetwork === true
  }, 60_000, 300)
  t.ok(gossiped >= 0, `the plain node learns the games node's policy from gossip (${JSON.stringify(members.map(m => m.capsules))})`)
  t.same(members.find(m => m.id === plain.id)?.capsules, { allowHostNetwork: false, allowGaming: false }, 'and its own defaults: neither allowed')

  const until = async (name: string, check: (row: Ps) => boolean): Promise<Ps | undefined> => {
    let row: Ps | undefined
    await waitFor(async () => { row = (await ps(plain)).find(x => x.name === name); return row !== undefined && check(row) }, 60_000, 300)
    return row
  }
  const run = async (t: Test, args: string[], unplaceable?: RegExp): Promise<void> => {
    const r = await plain.cli(['run', ...args], 30_000)
    if (unplaceable === undefined) t.equal(r.code, 0, `run ${args.join(' ')} exits 0 ${r.stderr.trim()}`)
    else {
      // run waits for the placement and says why none is possible (issue #24).
      t.equal(r.code, 1, `run ${args.join(' ')} exits 1: nothing can be placed`)
      t.match(r.stderr, unplaceable, 'and says why')
    }
  }

  await t.test('host networking', async t => {
    await run(t, [DEMO_REF, '--name', 'hostnet-plain', '--network', 'host', '--on', 'zone=plain', '--memory', '16M', '--', 'sleep', '600'], /no node allows host networking/)
    const pending = await until('hostnet-plain', r => r.reason !== null)
    t.match(pending, { node: null, state: 'pending', reason: 'no node allows host networking (set [capsules] allow_host_network)' }, 'pending with the reason on a node that does not allow it')

    await run(t, [DEMO_REF, '--name', 'hostnet', '--network', 'host', '--memory', '16M', '--', 'sleep', '600'])
    const running = await until('hostnet', r => r.state === 'running')
    t.match(running, { node: games.id, state: 'running' }, 'placed on the node that allows it, and runs there')

    await run(t, [DEMO_REF, '--name', 'ordinary', '--on', 'zone=plain', '--memory', '16M', '--', 'sleep', '600'])
    t.match(await until('ordinary', r => r.node !== null), { node: plain.id }, 'a capsule that does not ask for the host network still runs on the plain node')

    const bad = await plain.cli(['run', DEMO_REF, '--network', 'wifi'])
    t.equal(bad.code, 2, 'an unknown --network is bad usage')
    t.match(bad.stderr, /--network wifi: expected bridge, host or none/)
  })

  await t.test('gaming', async t => {
    await run(t, [DEMO_REF, '--name', 'game-plain', '--gaming', '--on', 'zone=plain', '--memory', '16M', '--', 'sleep', '600'], /no node allows gaming capsules/)
    t.match(await until('game-plain', r => r.reason !== null), { node: null, state: 'pending', reason: 'no node allows gaming capsules (set [capsules] allow_gaming)' }, 'pending with the reason where no node opts in')
    // An image that cannot be pulled: the placement is what counts, and no
    // input or sound device of this test machine ends up in a capsule.
    await run(t, ['127.0.0.1:9/none/game:1', '--name', 'game', '--gaming', '--memory', '16M'])
    t.match(await until('game', r => r.node !== null), { node: games.id }, 'placed on the node that opts in')
  })
})
