// `bolt-agent join --token T` with no address finds a member of T's cluster
// over mDNS on a LAN of namespaces; a second cluster on the same LAN is never
// joined by mistake; without mDNS, join says it needs an address.
import t from 'tap'
import { mdnsServiceTag } from '../../p2p/discovery/lan.js'
import { waitFor } from '../helpers/harness.js'
import { NetLab, netnsUnavailable, NsAgent, tempRoot } from './netlab.js'

t.test('the mDNS service name is a DNS label derived from the cluster id', async t => {
  const a = mdnsServiceTag('00112233aabbccdd')
  t.match(a, /^_bolt-[0-9a-f]{16}\._udp\.local$/)
  t.equal(a, mdnsServiceTag('00112233aabbccdd'), 'stable')
  t.not(a, mdnsServiceTag('00112233aabbccde'), 'another cluster, another name')
})

const why = await netnsUnavailable()
if (why !== undefined) {
  t.test('mDNS join on a LAN of namespaces', async t => { t.plan(0, `needs network namespaces: ${why}`) })
} else {
  t.test('join --token without an address joins over mDNS, the right cluster of two', async t => {
    const lab = await NetLab.create()
    const { root, cleanup } = await tempRoot()
    const agents: NsAgent[] = []
    t.teardown(async () => {
      await Promise.all(agents.map(async a => { await a.stop().catch(() => {}) }))
      await lab.destroy()
      await cleanup()
    })
    const [h1, h2, h3, h4] = [await lab.lanHost('m1'), await lab.lanHost('m2'), await lab.lanHost('m3'), await lab.lanHost('m4')]
    const red = await NsAgent.create(root, 'red', h1)
    const blue = await NsAgent.create(root, 'blue', h2)
    const joiner = await NsAgent.create(root, 'joiner', h3)
    const off = await NsAgent.create(root, 'off', h4, 'mdns = false\n')
    agents.push(red, blue, joiner, off)
    await Promise.all([red.start(['init']), blue.start(['init'])])

    const ready = await joiner.start(['join', '--token', red.ready!.token], 40_000)
    t.ok(ready.node.id, 'the joiner is ready')
    const both = await waitFor(async () => {
      const s = await joiner.status()
      const r = await red.status()
      return s?.members.some(m => m.id === red.id && m.state === 'alive') === true && r?.members.some(m => m.id === joiner.id && m.state === 'alive') === true
    }, 15_000, 300)
    t.ok(both >= 0, 'it is a member of the token\'s cluster, seen alive both ways')
    const s = await joiner.status()
    t.notOk(s?.members.some(m => m.id === blue.id), 'and never saw the other cluster on the same LAN')
    t.equal((await blue.status())?.members.length, 1, 'the other cluster has still one member')

    const refused = await off.cli(['--config', off.configFile, 'join', '--token', red.ready!.token], 20_000)
    t.equal(refused.code, 2, 'mdns = false: join without an address is bad usage')
    t.match(refused.stderr, /join needs the address of a member when mDNS is off/)
    const noMdns = await joiner.cli(['join', '--no-mdns', '--token', blue.ready!.token], 20_000)
    t.equal(noMdns.code, 2, '--no-mdns too')
  })
}
