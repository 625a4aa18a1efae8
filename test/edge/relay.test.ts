// Relayed and WebSockets connections get exactly the admission of direct
// ones: a member reachable only through a relay serves members, and a node
// without the cluster key reaches nothing — not through the relay (the relay
// refuses it), not over WebSockets.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLibp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { lpStream } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from '@libp2p/interface'
import { Admission } from '../../p2p/admission/admission.js'
import type { ClusterSecrets } from '../../p2p/admission/secrets.js'
import { createBoltNode, guardServiceProtocols, KAD_PROTOCOL, PING_PROTOCOL, REACHABILITY_GUARDED_PROTOCOLS, type BoltLibp2p } from '../../p2p/node.js'
import { DEFAULT_RELAY_SERVICE, RelaySlot, type ReachabilityOptions } from '../../p2p/reachability/index.js'
import { newClusterId, newClusterKey, newSecret } from '../../p2p/token.js'
import { EPHEMERAL_LISTEN, transportModules } from '../../quic/transports.js'
import { waitFor } from '../helpers/harness.js'

const SWIM = '/bolt/swim/1'
const NO_REACH: ReachabilityOptions = { reserve: 'never', autonat: false, holePunching: false }

interface Member { node: BoltLibp2p, admission: Admission }

async function member (dir: string, secrets: ClusterSecrets, opts: { listen?: string[], reach?: ReachabilityOptions, websockets?: string[] } = {}): Promise<Member> {
  const admission = new Admission({ secrets })
  const node = await createBoltNode({ dataDir: dir, listen: opts.listen ?? EPHEMERAL_LISTEN, dhtServer: true, admission, reach: opts.reach ?? NO_REACH, ...(opts.websockets !== undefined ? { websockets: opts.websockets } : {}) })
  await node.start()
  await admission.start(node)
  await node.handle(SWIM, admission.guard(async (stream) => {
    const lp = lpStream(stream)
    await lp.write((await lp.read()).subarray())
    await stream.close()
  }))
  await guardServiceProtocols(node, admission, [KAD_PROTOCOL, PING_PROTOCOL, ...REACHABILITY_GUARDED_PROTOCOLS])
  return { node, admission }
}

async function echoes (from: Libp2p, addr: Multiaddr): Promise<boolean> {
  try {
    const s = await from.dialProtocol(addr, SWIM, { signal: AbortSignal.timeout(8000) })
    const lp = lpStream(s)
    await lp.write(new Uint8Array([7, 7]))
    const back = await lp.read({ signal: AbortSignal.timeout(5000) })
    return back.subarray().length === 2
  } catch {
    return false
  }
}

t.test('a member reachable only through a relay serves members; a plain node reaches nothing', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-relay-'))
  const secrets: ClusterSecrets = { clusterId: newClusterId(), clusterKey: newClusterKey(), joinSecret: newSecret(), secretVersion: 1 }
  const relay = await member(join(dir, 'relay'), secrets, { reach: { ...NO_REACH, relayService: DEFAULT_RELAY_SERVICE } })
  // No listen address at all: like an agent behind NAT, it can only dial out.
  const hidden = await member(join(dir, 'hidden'), secrets, { listen: ['/ip4/127.0.0.1/tcp/0'] })
  const other = await member(join(dir, 'other'), secrets)
  const plain = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, ...transportModules(), transports: [...transportModules().transports, circuitRelayTransport()], services: { identify: identify() } })
  const slot = new RelaySlot(hidden.node, { checkMs: 1000 })
  t.teardown(async () => {
    slot.stop()
    for (const n of [plain, other.node, hidden.node, relay.node]) await Promise.resolve(n.stop()).catch(() => {})
    await rm(dir, { recursive: true, force: true })
  })

  const relayAddr = relay.node.getMultiaddrs().find(m => m.toString().includes('/tcp/'))!
  await hidden.node.dial(relayAddr)
  await hidden.admission.ensureAdmitted(relay.node.peerId.toString())
  await slot.start()
  t.ok(await waitFor(async () => slot.held(), 15_000) >= 0, 'the hidden member holds a relay slot')
  const circuit = hidden.node.getMultiaddrs().find(m => m.toString().includes('/p2p-circuit'))!
  t.match(circuit.toString(), new RegExp(`/p2p/${relay.node.peerId.toString()}/p2p-circuit/p2p/${hidden.node.peerId.toString()}$`), 'its relayed address names relay and member')

  await t.test('a member dials the relayed address and the cluster protocol answers', async t => {
    t.ok(await echoes(other.node, circuit), 'swim echo through the relay')
    const conn = other.node.getConnections(hidden.node.peerId)[0]
    t.ok(conn?.remoteAddr.toString().includes('/p2p-circuit'), 'over a relayed connection')
    t.equal(conn?.limits, undefined, 'unlimited by default, so every cluster protocol runs on it')
    t.ok(hidden.admission.isAdmitted(other.node.peerId.toString()), 'admission ran over the relayed connection')
  })

  await t.test('a plain node cannot be relayed, nor reserve a slot', async t => {
    t.notOk(await echoes(plain, circuit), 'swim through the relay refused')
    t.equal(plain.getConnections(hidden.node.peerId).length, 0, 'no relayed connection to the member exists')
    const tm = (plain as unknown as { components: { transportManager: { listen: (a: Multiaddr[]) => Promise<void> } } }).components.transportManager
    await t.rejects(tm.listen([multiaddr(`${relayAddr.toString()}/p2p-circuit`)]), 'the relay refuses it a reservation')
    t.notOk(plain.getMultiaddrs().some(m => m.toString().includes('/p2p-circuit')), 'no relayed address for a node outside the cluster')
    t.notOk(await echoes(plain, relayAddr), 'nor swim on the relay itself')
  })
})

t.test('WebSockets: members are admitted, a plain WebSockets client reaches nothing', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-ws-'))
  const secrets: ClusterSecrets = { clusterId: newClusterId(), clusterKey: newClusterKey(), joinSecret: newSecret(), secretVersion: 1 }
  const a = await member(join(dir, 'a'), secrets, { listen: [], websockets: ['/ip4/127.0.0.1/tcp/0/ws'] })
  const b = await member(join(dir, 'b'), secrets, { listen: [], websockets: ['/ip4/127.0.0.1/tcp/0/ws'] })
  const plain = await createLibp2p({ ...transportModules({ websockets: true }), services: { identify: identify() } })
  t.teardown(async () => {
    for (const n of [plain, b.node, a.node]) await Promise.resolve(n.stop()).catch(() => {})
    await rm(dir, { recursive: true, force: true })
  })
  const ws = a.node.getMultiaddrs().find(m => m.toString().includes('/ws'))
  t.ok(ws, `a listens on WebSockets (${a.node.getMultiaddrs().map(String).join(', ')})`)
  t.ok(await echoes(b.node, multiaddr(ws!.toString())), 'a member gets swim over WebSockets')
  t.ok(a.admission.isAdmitted(b.node.peerId.toString()), 'after admission')
  for (const proto of [SWIM, KAD_PROTOCOL, PING_PROTOCOL]) {
    const ok = await (async () => {
      try {
        const s = await plain.dialProtocol(ws!, proto, { signal: AbortSignal.timeout(5000) })
        const lp = lpStream(s)
        await lp.write(new Uint8Array([0]))
        await lp.read({ signal: AbortSignal.timeout(5000) })
        return true
      } catch { return false }
    })()
    t.notOk(ok, `${proto} refused to a plain WebSockets client`)
  }
})
