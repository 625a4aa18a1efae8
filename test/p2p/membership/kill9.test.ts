// kill -9 of a membership agent in its own process (no goodbye, sockets left
// dangling: QUIC connections to it are not closed): the others declare it
// dead; restarted with the same key, the same ports and its last persisted
// incarnation, it is alive again at a higher incarnation.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createLibp2p, type Libp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { transportModules, EPHEMERAL_LISTEN } from '../../../quic/transports.js'
import { MembershipService } from '../../../p2p/membership/service.js'
import { emptyMeta } from '../../../p2p/membership/meta.js'
import { profile, type SwimConfig } from '../../../p2p/membership/profiles.js'
import { suspicionBoundMs } from '../../../p2p/membership/core/suspicion.js'
import { waitOrFail } from '../../helpers/harness.js'

const overrides: Partial<SwimConfig> = { tickMs: 20, probeIntervalMs: 300, probeTimeoutMs: 150, gossipIntervalMs: 60, pushPullIntervalMs: 3000 }
const config = profile('lan', overrides)
const childScript = fileURLToPath(new URL('./fixtures/swim-child.js', import.meta.url))

interface Child { proc: ChildProcess, addrs: Promise<string[]>, joined: Promise<void>, inc: { last: number } }

function spawnChild (env: Record<string, string>, inc: { last: number }): Child {
  const proc = spawn(process.execPath, [childScript], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  let buf = ''
  let onAddrs: (a: string[]) => void = () => {}
  let onJoined: () => void = () => {}
  const addrs = new Promise<string[]>(resolve => { onAddrs = resolve })
  const joined = new Promise<void>(resolve => { onJoined = resolve })
  proc.stdout?.on('data', (d: Buffer) => {
    buf += d.toString()
    let nl
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      if (line.startsWith('ADDRS ')) onAddrs(JSON.parse(line.slice(6)) as string[])
      else if (line.startsWith('INC ')) inc.last = Math.max(inc.last, Number(line.slice(4)))
      else if (line === 'JOINED') onJoined()
    }
  })
  return { proc, addrs, joined, inc }
}


async function startLocal (name: string): Promise<{ node: Libp2p, svc: MembershipService }> {
  const node = await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
  const svc = new MembershipService({ libp2p: node, self: { meta: emptyMeta(name, 'server', node.getMultiaddrs().map(String)) }, config })
  await svc.start()
  return { node, svc }
}

t.test('kill -9, then restart with the same id and ports', async t => {
  const a = await startLocal('a')
  const b = await startLocal('b')
  const key = await generateKeyPair('Ed25519')
  const cid = peerIdFromPrivateKey(key).toString()
  const inc = { last: 0 }
  const env = (listen: string[]): Record<string, string> => ({
    SWIM_KEY: Buffer.from(privateKeyToProtobuf(key)).toString('hex'),
    SWIM_LISTEN: JSON.stringify(listen),
    SWIM_CONFIG: JSON.stringify(overrides),
    SWIM_LAST_INC: String(inc.last),
    SWIM_SEED: JSON.stringify({ id: a.node.peerId.toString(), addrs: a.node.getMultiaddrs().map(String) })
  })
  const children: ChildProcess[] = []
  t.teardown(async () => {
    for (const c of children) c.kill('SIGKILL')
    for (const x of [a, b]) { await x.svc.stop(); await x.node.stop() }
  })
  await b.svc.join([{ id: a.node.peerId.toString(), addrs: a.node.getMultiaddrs().map(String) }])
  let child = spawnChild(env(EPHEMERAL_LISTEN), inc)
  children.push(child.proc)
  const listen = await child.addrs
  await child.joined
  await waitOrFail('a and b see the child alive', () => a.svc.member(cid)?.state === 'alive' && b.svc.member(cid)?.state === 'alive')
  const before = a.svc.member(cid)?.incarnation ?? 0
  t.ok(inc.last >= before, `child reported incarnation ${inc.last} for persistence`)

  child.proc.kill('SIGKILL')
  const deadMs = await waitOrFail('a and b see the child dead', () => a.svc.member(cid)?.state === 'dead' && b.svc.member(cid)?.state === 'dead')
  t.comment(`dead ${deadMs} ms after kill -9 (bound ${suspicionBoundMs(config, 3)} ms)`)
  t.pass('declared dead')

  child = spawnChild(env(listen), inc)
  children.push(child.proc)
  t.same(await child.addrs, listen, 'restarted on the same ports')
  await child.joined
  const backMs = await waitOrFail('a and b see the child alive again', () => a.svc.member(cid)?.state === 'alive' && b.svc.member(cid)?.state === 'alive')
  t.comment(`alive again ${backMs} ms after joining`)
  t.ok((a.svc.member(cid)?.incarnation ?? 0) > before, `incarnation ${a.svc.member(cid)?.incarnation} > ${before}`)
  // It stays alive: the stale connections of its first life do not get it suspected again.
  await new Promise(resolve => setTimeout(resolve, 3000))
  t.equal(a.svc.member(cid)?.state, 'alive', 'still alive 3 s later')
  t.equal(b.svc.member(cid)?.state, 'alive')
})
