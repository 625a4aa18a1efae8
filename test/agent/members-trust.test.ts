// What an admitted member may do to others, against real agent processes:
// a rogue member (a real libp2p node that joined with the token and speaks
// /bolt/swim/1 itself) says another member left — nobody believes it;
// `evict` removes the rogue, replaces the cluster key everywhere, and the
// rogue's machine cannot come back, neither with its old key nor a fresh one
// with the old token. (The honest case, leave and rejoin: members-rejoin.test.ts.)
import t from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { Cluster, seedAddr, waitFor, type AgentProcess } from '../helpers/harness.js'
import { Admission } from '../../p2p/admission/admission.js'
import type { ClusterSecrets } from '../../p2p/admission/secrets.js'
import { createBoltNode, loadPeerKey, type BoltLibp2p } from '../../p2p/node.js'
import { parseToken } from '../../p2p/token.js'
import { EPHEMERAL_LISTEN } from '../../quic/transports.js'
import { decodeMessage, encodeMessage } from '../../p2p/membership/codec.js'
import { emptyMeta } from '../../p2p/membership/meta.js'
import { signLeft } from '../../p2p/membership/left-proof.js'
import type { SwimMessage } from '../../p2p/membership/messages.js'

const SWIM = '/bolt/swim/1'

interface Rogue { node: BoltLibp2p, admission: Admission, dir: string, acks: Map<number, () => void> }

/** A node that joins with the token like any agent, then speaks SWIM by hand. */
async function startRogue (root: string, name: string, secrets?: ClusterSecrets): Promise<Rogue> {
  const dir = join(root, name)
  const admission = new Admission(secrets !== undefined ? { secrets } : {})
  const node = await createBoltNode({ dataDir: dir, listen: EPHEMERAL_LISTEN, dhtServer: false, admission })
  await node.start()
  await admission.start(node)
  const acks = new Map<number, () => void>()
  // Agents answer our pings on a stream of their own: read acks there.
  await node.handle(SWIM, admission.guard(async (stream) => {
    const lp = lpStream(stream)
    try {
      for (;;) {
        const msg = decodeMessage((await lp.read()).subarray())
        if (msg.t === 'ack') acks.get(msg.seq)?.()
      }
    } catch { stream.abort(new Error('rogue: done')) }
  }), { runOnLimitedConnection: true })
  return { node, admission, dir, acks }
}

async function stopRogue (r: Rogue): Promise<void> {
  await r.admission.stop()
  await r.node.stop()
}

/** Sends `msgs` on one stream, the last a ping; resolves once the agent acked it, i.e. processed all of them in order. */
async function sendAndWaitAck (r: Rogue, agent: AgentProcess, msgs: SwimMessage[], seq: number): Promise<void> {
  const acked = new Promise<void>(resolve => { r.acks.set(seq, resolve) })
  const addr = multiaddr(seedAddr(agent, 'tcp'))
  await r.node.dial(addr)
  await r.admission.ensureAdmitted(agent.id, AbortSignal.timeout(10_000))
  const stream = await r.node.dialProtocol(addr, SWIM, { signal: AbortSignal.timeout(10_000) })
  const lp = lpStream(stream)
  for (const m of msgs) await lp.write(encodeMessage(m))
  await Promise.race([acked, new Promise((_resolve, reject) => setTimeout(() => reject(new Error(`${agent.name} did not ack ping ${seq}`)), 20_000).unref())])
  await stream.close().catch(() => {})
}

const stateOn = async (a: AgentProcess, id: string): Promise<string | undefined> => (await a.status())?.members.find(m => m.id === id)?.state

async function clusterFile (a: AgentProcess): Promise<{ keyVersion?: number, evicted?: string[], revoked?: string[], clusterKey: string }> {
  return JSON.parse(await readFile(join(a.dataDir, 'cluster.json'), 'utf8'))
}

t.test('members: no one speaks for another; evict removes for good', async t => {
  const cluster = await Cluster.create()
  const root = await mkdtemp(join(tmpdir(), 'bolt-rogue-'))
  const rogues: Rogue[] = []
  t.teardown(async () => {
    for (const r of rogues) await stopRogue(r).catch(() => {})
    await cluster.destroy()
    await rm(root, { recursive: true, force: true })
  })
  // Formed by hand for generous start-up timeouts: this runs beside other suites on a loaded machine.
  const x = await cluster.add('x')
  await x.start(['init'], 120_000)
  const y = await cluster.add('y')
  await y.start(['join', seedAddr(x, 'tcp'), '--token', x.ready!.token], 120_000)
  const z = await cluster.add('z')
  await z.start(['join', seedAddr(x, 'tcp'), '--token', x.ready!.token], 120_000)
  const agents = [x, y, z]
  const voters = await waitFor(async () => {
    const s = await x.status()
    return s !== undefined && s.leader !== null && s.members.filter(m => m.role === 'server').length === 3
  }, 90_000, 500)
  t.ok(voters >= 0, 'three voters and a leader')
  const oldToken = x.ready!.token

  const rogue = await startRogue(root, 'rogue')
  rogues.push(rogue)
  await rogue.admission.join(multiaddr(seedAddr(x, 'tcp')), parseToken(oldToken), AbortSignal.timeout(20_000))
  const rogueId = rogue.node.peerId.toString()

  await t.test('a rogue member gossips that y left: nobody takes it, y stays a voter', async t => {
    const yInc = (await y.status())?.members.find(m => m.id === y.id)?.incarnation ?? 1
    // Signed, but by the rogue's key: a forgery like the unsigned one.
    const forgedSig = await signLeft(await loadPeerKey(rogue.dir), y.id, yInc + 7)
    const rogueMeta = emptyMeta('rogue', 'client', rogue.node.getMultiaddrs().map(String).map(a => a.replace(/\/p2p\/.*$/, '')))
    let seq = 100
    // Told to x and z only: y itself would refute any news of its leaving.
    for (const a of [x, z]) {
      await sendAndWaitAck(rogue, a, [
        { t: 'push-pull', join: false, reply: false, states: [{ id: y.id, inc: yInc + 5, state: 'left' }] },
        { t: 'gossip', g: [{ k: 'left', id: y.id, inc: yInc + 6 }, { k: 'left', id: y.id, inc: yInc + 7, sig: forgedSig }] },
        { t: 'ping', seq: ++seq, target: a.id, g: [{ k: 'left', id: y.id, inc: yInc + 8 }, { k: 'alive', id: rogueId, inc: 1, meta: rogueMeta }] }
      ], seq)
    }
    t.pass('x and z processed the forged news (each acked the ping sent after it)')
    for (const a of [x, z]) {
      t.not(await stateOn(a, y.id), 'left', `${a.name} does not hold y left`)
      // Its log line would have been written before the ack; a status call since gives the pipe time.
      t.notOk(a.stderrTail.some(l => l.includes('"member left"') && l.includes(y.id)), `${a.name} never logged y as left`)
    }
    // Had x or z believed it, they would have gossiped it to y, and y refuted above the forged incarnations.
    const yNow = (await y.status())?.members.find(m => m.id === y.id)?.incarnation ?? 0
    t.ok(yNow < yInc + 5, `y was never pushed to refute a departure (incarnation ${yInc} → ${yNow})`)
    t.equal((await x.status())?.members.find(m => m.id === y.id)?.role, 'server', 'y is still a voter')
    for (const a of agents) t.same((await clusterFile(a)).evicted ?? [], [], `${a.name} evicted nobody`)
    const put = await y.cli(['object', 'put', join(cluster.root, 'x.toml'), '--json'], 60_000)
    t.equal(put.code, 0, `y still writes to the cluster (${put.stderr.trim()})`)
  })

  await t.test('evict: the rogue is cut off, the key replaced everywhere, and it cannot come back', async t => {
    const seen = await waitFor(async () => (await x.status())?.members.some(m => m.name === 'rogue') === true, 20_000)
    t.ok(seen >= 0, 'x lists the rogue as a member')
    const oldKey = (await clusterFile(x)).clusterKey
    const before = rogue.admission.clusterSecrets()!
    const r = await x.cli(['evict', 'rogue', '--json'])
    t.equal(r.code, 0, `evict exits 0 (${r.stderr.trim()})`)
    const out = JSON.parse(r.stdout) as { evicted: { id: string, name: string }, keyVersion: number, token: string, join: string }
    t.same(out.evicted, { id: rogueId, name: 'rogue' })
    t.equal(out.keyVersion, 2)
    t.not(out.token, oldToken, 'a new token')
    const spread = await waitFor(async () => {
      for (const a of agents) {
        const f = await clusterFile(a)
        if (f.keyVersion !== 2 || f.clusterKey === oldKey || !(f.evicted ?? []).includes(rogueId)) return false
      }
      return true
    }, 30_000)
    t.ok(spread >= 0, 'every agent holds key version 2 and the rogue evicted (persisted)')
    const keys = new Set(await Promise.all(agents.map(async a => (await clusterFile(a)).clusterKey)))
    t.equal(keys.size, 1, 'one new key')
    const shown = (await x.status())?.members.find(m => m.id === rogueId)?.state
    t.ok(shown === undefined || shown === 'left', `status shows the rogue gone (${shown ?? 'reaped'})`)

    // 1. Its own peer id, with the old key: refused by every member.
    for (const a of [y, z]) {
      await rogue.node.hangUp(peerIdFromString(a.id)).catch(() => {})
      const err = await (async () => {
        await rogue.node.dial(multiaddr(seedAddr(a, 'tcp')), { signal: AbortSignal.timeout(10_000) })
        await rogue.admission.ensureAdmitted(a.id, AbortSignal.timeout(10_000))
      })().then(() => undefined, (e: Error) => e)
      t.ok(err !== undefined, `${a.name} refuses the evicted peer id (${err?.message})`)
    }
    // 2. The same machine under a fresh peer id, proving the old cluster key as a member.
    const sybil = await startRogue(root, 'rogue-fresh-key', { ...before })
    rogues.push(sybil)
    for (const a of agents) {
      const err = await (async () => {
        await sybil.node.dial(multiaddr(seedAddr(a, 'tcp')), { signal: AbortSignal.timeout(10_000) })
        await sybil.admission.ensureAdmitted(a.id, AbortSignal.timeout(10_000))
      })().then(() => undefined, (e: Error) => e)
      t.ok(err !== undefined, `${a.name} refuses a fresh peer id holding the old key (${err?.message})`)
    }
    t.equal(sybil.admission.clusterSecrets()?.keyVersion ?? 1, 1, 'it was handed no new key')
    // 3. A fresh peer id joining with the old token.
    const joiner = await startRogue(root, 'rogue-old-token')
    rogues.push(joiner)
    for (const a of agents) {
      const err = await joiner.admission.join(multiaddr(seedAddr(a, 'tcp')), parseToken(oldToken), AbortSignal.timeout(20_000)).then(() => undefined, (e: Error) => e)
      t.match(err, { name: 'AdmissionRejectedError', reason: 'token' }, `${a.name} rejects the old token`)
    }
    // 4. The new token does admit (what an operator gives a machine it wants back).
    const fresh = await startRogue(root, 'new-token')
    rogues.push(fresh)
    const ok = await fresh.admission.join(multiaddr(seedAddr(y, 'tcp')), parseToken(out.token), AbortSignal.timeout(20_000))
    t.equal(ok.peerId, y.id, 'the new token joins')
    t.equal(fresh.admission.clusterSecrets()?.keyVersion, 2, 'at key version 2')
  })
})
