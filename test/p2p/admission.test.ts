import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLibp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { lpStream } from '@libp2p/utils'
import { Admission, JOIN_ATTEMPTS } from '../../p2p/admission/admission.js'
import type { ClusterSecrets } from '../../p2p/admission/secrets.js'
import { ADMIT_PROTOCOL } from '../../p2p/admission/messages.js'
import { createBoltNode, guardServiceProtocols, KAD_PROTOCOL, PING_PROTOCOL } from '../../p2p/node.js'
import { clusterKeyFingerprint, formatToken, newClusterId, newClusterKey, newSecret, parseToken } from '../../p2p/token.js'
import { EPHEMERAL_LISTEN, transportModules, transportOf } from '../../quic/transports.js'

const SWIM = '/bolt/swim/1'

async function member (dir: string, secrets?: ClusterSecrets) {
  const admission = new Admission(secrets !== undefined ? { secrets } : {})
  const node = await createBoltNode({ dataDir: dir, listen: EPHEMERAL_LISTEN, dhtServer: true, admission })
  await node.start()
  await admission.start(node)
  await node.handle(SWIM, admission.guard(async (stream) => {
    const lp = lpStream(stream)
    await lp.write((await lp.read()).subarray())
    await stream.close()
  }))
  await guardServiceProtocols(node, admission, [KAD_PROTOCOL, PING_PROTOCOL])
  return { node, admission }
}

t.test('admission holds on QUIC and TCP', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-adm-'))
  const clusterKey = newClusterKey()
  const secrets: ClusterSecrets = { clusterId: newClusterId(), clusterKey, joinSecret: newSecret(), secretVersion: 1 }
  const token = parseToken(formatToken({ clusterId: secrets.clusterId, fingerprint: clusterKeyFingerprint(Buffer.from(clusterKey, 'hex')), secret: secrets.joinSecret }))
  const a = await member(join(dir, 'a'), secrets)
  const plain = await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
  t.teardown(async () => { await a.node.stop(); await plain.stop(); await rm(dir, { recursive: true, force: true }) })

  for (const kind of ['quic', 'tcp'] as const) {
    const addr = a.node.getMultiaddrs().find(m => transportOf(m) === kind)!
    await t.test(`${kind}: right token joins, swim answers`, async t => {
      const b = await member(join(dir, `b-${kind}`))
      t.teardown(async () => { await b.node.stop() })
      const res = await b.admission.join(addr, token)
      t.equal(res.peerId, a.node.peerId.toString())
      t.equal(b.admission.clusterSecrets()?.clusterKey, clusterKey, 'joiner learned the cluster key')
      t.ok(a.admission.isAdmitted(b.node.peerId.toString()), 'a admitted b')
      const s = await b.node.dialProtocol(addr, SWIM)
      const lp = lpStream(s)
      await lp.write(new Uint8Array([1, 2, 3]))
      t.same([...(await lp.read()).subarray()], [1, 2, 3])
    })
    await t.test(`${kind}: wrong token is rejected`, async t => {
      const c = await member(join(dir, `c-${kind}`))
      t.teardown(async () => { await c.node.stop() })
      const bad = { ...token, secret: newSecret() }
      await t.rejects(c.admission.join(addr, bad), { name: 'AdmissionRejectedError', reason: 'token' }, 'a wrong secret fails the exchange')
      t.notOk(a.admission.isAdmitted(c.node.peerId.toString()))
    })
    await t.test(`${kind}: a plain node cannot open swim, kad or ping`, async t => {
      for (const proto of [SWIM, KAD_PROTOCOL, PING_PROTOCOL]) {
        const ok = await (async () => {
          try {
            const s = await plain.dialProtocol(addr, proto)
            const lp = lpStream(s)
            await lp.write(new Uint8Array([0]))
            await lp.read({ signal: AbortSignal.timeout(5000) })
            return true
          } catch { return false }
        })()
        t.notOk(ok, `${proto} refused over ${kind}`)
      }
      await plain.hangUp(a.node.peerId)
    })
  }
})

t.test('join tries again when the connection breaks before the member answers, never after a refusal', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-adm-retry-'))
  const clusterKey = newClusterKey()
  const secrets: ClusterSecrets = { clusterId: newClusterId(), clusterKey, joinSecret: newSecret(), secretVersion: 1 }
  const token = parseToken(formatToken({ clusterId: secrets.clusterId, fingerprint: clusterKeyFingerprint(Buffer.from(clusterKey, 'hex')), secret: secrets.joinSecret }))
  // A node that accepts the admission protocol and ends every stream unanswered.
  const mute = await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
  let opened = 0
  await mute.handle(ADMIT_PROTOCOL, (stream) => { opened++; void stream.close() })
  const seed = await member(join(dir, 'seed'), secrets)
  const logs: string[] = []
  const admission = new Admission({ log: (m) => { logs.push(m) } })
  const node = await createBoltNode({ dataDir: join(dir, 'joiner'), listen: EPHEMERAL_LISTEN, dhtServer: true, admission })
  await node.start()
  await admission.start(node)
  t.teardown(async () => { await node.stop(); await seed.node.stop(); await mute.stop(); await rm(dir, { recursive: true, force: true }) })

  const err = await admission.join(mute.getMultiaddrs().find(m => transportOf(m) === 'tcp')!, token).then(() => undefined, (e: Error) => e)
  t.ok(err !== undefined && err.name !== 'AdmissionRejectedError', `a member that never answers is a network failure (${err?.name}: ${err?.message})`)
  t.equal(opened, JOIN_ATTEMPTS, `tried ${JOIN_ATTEMPTS} times`)
  t.equal(logs.filter(l => l.includes('trying again')).length, JOIN_ATTEMPTS - 1, 'each retry is logged')

  logs.length = 0
  const seedAddr = seed.node.getMultiaddrs().find(m => transportOf(m) === 'tcp')!
  await t.rejects(admission.join(seedAddr, { ...token, secret: newSecret() }), { name: 'AdmissionRejectedError', reason: 'token' })
  t.equal(logs.filter(l => l.includes('trying again')).length, 0, 'a refusal is not tried again')
  const ok = await admission.join(seedAddr, token)
  t.equal(ok.peerId, seed.node.peerId.toString(), 'the right token still joins')
})
