// The piece exchange over real libp2p nodes (QUIC and TCP on loopback).
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLibp2p, type Libp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { EPHEMERAL_LISTEN, transportModules, transportOf } from '../../../quic/transports.js'
import { BlobStore } from '../../../p2p/content/blob-store.js'
import { sha256Digest, sha256Hex } from '../../../p2p/content/digest.js'
import { PieceExchange } from '../../../p2p/content/piece-exchange.js'
import { SEND_SLICE_BYTES } from '../../../p2p/content/piece-server.js'
import { MemoryProviderTable } from '../../../p2p/content/providers.js'
import { HASHER_THREAD_MIN_BYTES } from '../../../p2p/content/blob-hasher.js'
import { PeerChannel } from '../../../p2p/content/peer-channel.js'
import { Bitfield } from '../../../p2p/content/bitfield.js'
import { PIECES_PROTOCOL } from '../../../p2p/content/piece-messages.js'
import { hashPiece, MAX_PIECE_SIZE, MIN_PIECE_SIZE } from '../../../p2p/content/pieces.js'
import { waitOrFail } from '../../helpers/harness.js'

const PIECE = 64 * 1024

interface TestNode { libp2p: Libp2p, store: BlobStore, ex: PieceExchange, id: string, dir: string }

async function mkNode (t: { teardown: (fn: () => Promise<void>) => void }, opts: { corrupt?: boolean, uploadSlots?: number, providers?: MemoryProviderTable, recentPieceBytes?: number, listen?: string[], pieceSize?: number } = {}): Promise<TestNode> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-px-'))
  const libp2p = await createLibp2p({ addresses: { listen: opts.listen ?? EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
  const store = await BlobStore.open({ root: dir, pieceSize: opts.pieceSize ?? PIECE })
  const id = libp2p.peerId.toString()
  const ex = new PieceExchange({
    libp2p,
    store,
    pieceSize: opts.pieceSize ?? PIECE,
    uploadSlots: opts.uploadSlots,
    recentPieceBytes: opts.recentPieceBytes,
    corruptPieces: opts.corrupt,
    providers: opts.providers?.sourceFor(id),
    picker: { queryIntervalMs: 50, startDelayMs: 2000, registryDeadlineMs: 2000, requestTimeoutMs: 5000, stallTimeoutMs: 5000 }
  })
  await ex.start()
  const node = { libp2p, store, ex, id, dir }
  t.teardown(async () => {
    await ex.stop()
    await libp2p.stop()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })
  return node
}

async function connect (a: TestNode, b: TestNode, kind: 'tcp' | 'quic' = 'tcp'): Promise<void> {
  const addr = b.libp2p.getMultiaddrs().find(m => transportOf(m) === kind)
  if (addr === undefined) throw new Error(`no ${kind} address`)
  await a.libp2p.dial(addr)
}

/** A node holding a random blob of `size` bytes, and another connected to it. */
async function holderAndPuller (t: { teardown: (fn: () => Promise<void>) => void }, size: number, holderOpts: { uploadSlots?: number } = {}, kind: 'tcp' | 'quic' = 'tcp'): Promise<{ holder: TestNode, puller: TestNode, data: Buffer, d: string }> {
  const holder = await mkNode(t, holderOpts)
  const puller = await mkNode(t)
  const data = randomBytes(size)
  const d = sha256Digest(data)
  await holder.store.put(data, d)
  await connect(puller, holder, kind)
  return { holder, puller, data, d }
}

function countingRegistry (data: Uint8Array): { fn: (r: { start: number, length: number }) => Promise<Uint8Array>, bytes: () => number } {
  let bytes = 0
  return {
    fn: async (r) => {
      bytes += r.length
      await new Promise(resolve => setTimeout(resolve, 2))
      return data.slice(r.start, r.start + r.length)
    },
    bytes: () => bytes
  }
}

t.test('pull a blob from one peer, over TCP and over QUIC', async t => {
  for (const kind of ['tcp', 'quic'] as const) {
    const a = await mkNode(t)
    const b = await mkNode(t)
    const data = randomBytes(10 * PIECE + 1234)
    const d = sha256Digest(data)
    await a.store.put(data, d)
    await connect(b, a, kind)
    const stats = await b.ex.pull(d, { size: data.length, candidates: [a.id] })
    t.equal(stats.bytesFromPeers, data.length, kind)
    t.equal(stats.bytesFromRegistry, 0)
    t.same(Buffer.from(await b.store.readAll(d)), data)
    t.ok(a.ex.counters.bytesServed >= data.length)
  }
})

t.test('a served piece\'s buffer goes back to the pool once Noise has sealed it (TCP) or once QUIC has written it', async t => {
  for (const kind of ['tcp', 'quic'] as const) {
    const { holder: a, puller: b, data, d } = await holderAndPuller(t, 10 * PIECE + 1234, {}, kind)
    await b.ex.pull(d, { size: data.length, candidates: [a.id] })
    t.same(Buffer.from(await b.store.readAll(d)), data, `${kind}: the pulled bytes are intact`)
    a.ex.recent.drop(d) // the cache's references go; only the sends' remain
    t.ok(a.ex.buffers.made > 0, `${kind}: the server read pieces into pool buffers`)
    await waitOrFail(`every buffer sent over ${kind} back in the pool`, () => a.ex.buffers.spareCount() === a.ex.buffers.made, 5000)
  }
})

t.test('over QUIC, reused piece buffers are never handed out while a send holds them', async t => {
  // No cache: every piece is read from disk into a pool buffer, sent in
  // several slices (pieces over SEND_SLICE_BYTES), given back, and reused
  // for the next piece while the other puller's sends go on.
  const pieceSize = 2 * SEND_SLICE_BYTES
  const a = await mkNode(t, { recentPieceBytes: 0, listen: ['/ip4/127.0.0.1/udp/0/quic-v1'], pieceSize })
  const pullers = [await mkNode(t, { pieceSize }), await mkNode(t, { pieceSize })]
  const pieces = 10
  const data = randomBytes(pieces * pieceSize - 99)
  const d = sha256Digest(data)
  await a.store.put(data, d)
  for (const p of pullers) await connect(p, a, 'quic')
  await Promise.all(pullers.map(async p => { await p.ex.pull(d, { size: data.length, candidates: [a.id] }) }))
  for (const p of pullers) t.equal(sha256Digest(Buffer.from(await p.store.readAll(d))), d, 'each puller got every byte intact')
  t.equal(a.ex.counters.bytesServed, 2 * data.length, 'the holder served each piece once to each (none refused as corrupt and sent again)')
  t.ok(a.ex.buffers.made < pieces, `pool buffers were reused (${a.ex.buffers.made} made for ${2 * pieces} pieces sent)`)
  await waitOrFail('every buffer back in the pool', () => a.ex.buffers.spareCount() === a.ex.buffers.made, 5000)
})

t.test('a node serves the pieces it just received from memory; a corrupting server never spoils what it keeps', async t => {
  const a = await mkNode(t)
  const b = await mkNode(t)
  const c = await mkNode(t)
  const data = randomBytes(6 * PIECE + 777)
  const d = sha256Digest(data)
  await a.store.put(data, d)
  await connect(b, a, 'quic')
  await connect(c, b, 'tcp')
  await b.ex.pull(d, { size: data.length, candidates: [a.id] })
  t.equal(b.ex.recent.size, 7, 'b keeps the 7 pieces it received')
  const stats = await c.ex.pull(d, { size: data.length, candidates: [b.id] })
  t.equal(stats.bytesFromPeers, data.length)
  t.same(Buffer.from(await c.store.readAll(d)), data, 'received chunk lists served again arrive intact')
  t.equal(b.ex.recent.hits, 7, 'every piece served from memory')
  t.equal(b.ex.recent.misses, 0, 'no piece read from disk')
  t.equal(a.ex.recent.misses, 7, 'a read each piece from disk once')

  // A server told to corrupt what it sends works on a copy: the pieces it keeps stay good.
  const bad = await mkNode(t, { corrupt: true })
  const e = await mkNode(t)
  await bad.store.put(data, d)
  await connect(e, bad)
  const reg = countingRegistry(data)
  const s1 = await e.ex.pull(d, { size: data.length, candidates: [bad.id], registry: reg.fn })
  t.same(s1.bannedPeers, [bad.id])
  t.same(Buffer.from(await e.store.readAll(d)), data)
  t.ok(bad.ex.recent.size > 0, 'the corrupt server kept the pieces it read')
  for (let i = 0; i < 7; i++) {
    const kept = bad.ex.recent.get(d, PIECE, i)
    if (kept === undefined) continue
    t.same(Buffer.from(kept.bytes), data.subarray(i * PIECE, Math.min(data.length, (i + 1) * PIECE)), `kept piece ${i} unchanged`)
    kept.release()
  }

  // Removing the blob forgets its pieces.
  await b.store.delete(d)
  t.equal(b.ex.recent.size, 0)
})

t.test('pieces that passed a lying holder\'s hashes but failed the blob\'s digest are not kept in memory', async t => {
  // The holder's partial has wrong bytes under hashes of those wrong bytes:
  // every piece check passes, the whole digest does not.
  const liar = await mkNode(t)
  const b = await mkNode(t)
  const data = randomBytes(4 * PIECE)
  const d = sha256Digest(data)
  const bad = Buffer.from(data)
  bad[PIECE + 3] = (bad[PIECE + 3] ?? 0) ^ 0xff
  const partial = await liar.store.openPartial(d, data.length, PIECE)
  for (let i = 0; i < 4; i++) {
    const piece = bad.subarray(i * PIECE, (i + 1) * PIECE)
    await partial.writePiece(i, piece, hashPiece(piece))
  }
  await connect(b, liar)
  // No registry to fall back to: the pull fails on the digest.
  await t.rejects(b.ex.pull(d, { size: data.length, candidates: [liar.id] }), { name: 'DigestMismatchError' })
  t.equal(b.ex.recent.size, 0, 'no piece of the failed blob is served from memory')
  t.equal(b.store.getPartial(d)?.have.count() ?? 0, 0, 'nor from the partial')
})

t.test('providers from the provider source; a node advertises a blob it only partly holds', async t => {
  const table = new MemoryProviderTable()
  const a = await mkNode(t, { providers: table })
  const b = await mkNode(t, { providers: table })
  const data = randomBytes(6 * PIECE)
  const d = sha256Digest(data)
  await a.store.put(data, d)
  await waitOrFail('a put blob is announced', () => table.providers(d).includes(a.id), 10_000, 5)
  t.same(table.providers(d), [a.id], 'a put blob is announced')
  await connect(b, a)
  // Progress is reported before a landed piece is announced: by the second
  // piece's report the first has been announced, with 4 of 6 still missing.
  let announcedPartly: boolean | undefined
  const stats = await b.ex.pull(d, {
    size: data.length,
    onProgress: p => { if (p.piecesDone === 2) announcedPartly = table.providers(d).includes(b.id) }
  })
  t.equal(stats.bytesFromPeers, data.length)
  t.equal(announcedPartly, true, 'b announced the blob while it held only part of it')
  t.ok(table.providers(d).includes(b.id), 'and still announces it after pulling')
  await b.store.delete(d)
  await waitOrFail('b withdraws the blob', () => !table.providers(d).includes(b.id), 10_000, 5)
  t.notOk(table.providers(d).includes(b.id), 'withdrawn on removal')
})

// Small blobs are checked inline; large ones on the hashing thread.
for (const [what, size] of [['inline', 12 * PIECE], ['on the hashing thread', HASHER_THREAD_MIN_BYTES + 3 * PIECE + 17]] as const) {
  t.test(`a corrupt peer is banned, the pull completes from an honest one, no bad byte stored (${what})`, async t => {
    const bad = await mkNode(t, { corrupt: true })
    const good = await mkNode(t)
    const b = await mkNode(t)
    const data = randomBytes(size)
    const d = sha256Digest(data)
    await bad.store.put(data, d)
    await good.store.put(data, d)
    await connect(b, bad)
    await connect(b, good)
    const stats = await b.ex.pull(d, { size: data.length, candidates: [bad.id, good.id] })
    t.same(stats.bannedPeers, [bad.id])
    t.ok(b.ex.bannedPeers.has(bad.id))
    t.same(Buffer.from(await b.store.readAll(d)), data)
  })
}

t.test('the only peer is corrupt: banned, and the registry serves everything', async t => {
  const bad = await mkNode(t, { corrupt: true })
  const b = await mkNode(t)
  const data = randomBytes(5 * PIECE)
  const d = sha256Digest(data)
  await bad.store.put(data, d)
  await connect(b, bad)
  const reg = countingRegistry(data)
  const stats = await b.ex.pull(d, { size: data.length, candidates: [bad.id], registry: reg.fn })
  t.same(stats.bannedPeers, [bad.id])
  t.equal(stats.bytesFromRegistry, data.length)
  t.same(Buffer.from(await b.store.readAll(d)), data)
})

t.test('the only peer dies mid-pull: the pull completes from the registry', async t => {
  const a = await mkNode(t)
  const b = await mkNode(t)
  const data = randomBytes(40 * PIECE)
  const d = sha256Digest(data)
  await a.store.put(data, d)
  await connect(b, a)
  const reg = countingRegistry(data)
  let killed = false
  const stats = await b.ex.pull(d, {
    size: data.length,
    candidates: [a.id],
    registry: reg.fn,
    onProgress: p => {
      if (!killed && p.piecesDone >= 5) {
        killed = true
        void a.libp2p.stop()
      }
    }
  })
  t.ok(killed)
  t.ok(stats.bytesFromPeers > 0, `from peers: ${stats.bytesFromPeers}`)
  t.ok(stats.bytesFromRegistry > 0 && stats.bytesFromRegistry < data.length, `from registry: ${stats.bytesFromRegistry}`)
  t.same(Buffer.from(await b.store.readAll(d)), data)
})

t.test('the server answers pipelined requests in order while reading ahead, and frees the upload slot of an answer read ahead when the client goes', async t => {
  const { holder: a, puller: b, data, d } = await holderAndPuller(t, 6 * PIECE, { uploadSlots: 1 })
  const open = async (): Promise<PeerChannel> => new PeerChannel(a.id, await b.libp2p.dialProtocol(a.libp2p.peerId, PIECES_PROTOCOL), 5000, b.ex.buffers)

  // Six requests at once, piece and bitfield requests mixed: the answers come back in request order.
  const ch = await open()
  const asked: Array<number | 'have'> = [4, 'have', 1, 5, 0, 'have']
  const answers = await Promise.all(asked.map(async q => q === 'have'
    ? await ch.request({ t: 'have?', digest: d, pieceSize: PIECE })
    : await ch.request({ t: 'piece?', digest: d, pieceSize: PIECE, index: q })))
  t.same(answers.map(r => r.res.t), asked.map(q => q === 'have' ? 'have' : 'piece'))
  for (let i = 0; i < asked.length; i++) {
    const q = asked[i]
    if (typeof q !== 'number') continue
    const r = answers[i]
    t.equal(r?.res.t === 'piece' ? r.res.index : -1, q)
    t.equal(sha256Hex(r?.data?.bytes ?? new Uint8Array()), sha256Hex(data.subarray(q * PIECE, (q + 1) * PIECE)), `piece ${q} carries its own bytes`)
    r?.data?.release()
  }
  ch.close()

  // One upload slot: a client asks for two pieces (the second is read ahead
  // and holds the slot) and goes away. Another client is still served.
  const gone = await open()
  const first = gone.request({ t: 'piece?', digest: d, pieceSize: PIECE, index: 2 })
  const second = gone.request({ t: 'piece?', digest: d, pieceSize: PIECE, index: 3 })
  second.catch(() => {})
  await first
  gone.abort()
  await t.rejects(second)
  const later = await open()
  const r = await later.request({ t: 'piece?', digest: d, pieceSize: PIECE, index: 3 })
  t.equal(r.res.t, 'piece', 'the slot came back')
  t.equal(sha256Hex(r.data?.bytes ?? new Uint8Array()), sha256Hex(data.subarray(3 * PIECE, 4 * PIECE)))
  r.data?.release()
  later.close()
})

t.test('a have? long poll is answered once the pulling node holds more than the asker saw, or when its wait ends', async t => {
  const a = await mkNode(t)
  const b = await mkNode(t)
  await connect(b, a)
  const data = randomBytes(4 * PIECE)
  const d = sha256Digest(data)
  // A registry that hands out a piece only when the test opens its gate.
  const gates: Array<() => void> = []
  let open = false
  const registry = async (r: { start: number, length: number }): Promise<Uint8Array> => {
    if (!open) await new Promise<void>(resolve => gates.push(resolve))
    return data.slice(r.start, r.start + r.length)
  }
  const pulled = a.ex.pull(d, { size: data.length, candidates: [], registry })
  const ch = new PeerChannel(a.id, await b.libp2p.dialProtocol(a.libp2p.peerId, PIECES_PROTOCOL), 5000, b.ex.buffers)
  t.teardown(() => { ch.close() })
  const count = (res: { t: string, bitfield?: Uint8Array }): number => res.t === 'have' ? new Bitfield(4, res.bitfield).count() : -1
  await waitOrFail('a registry request of the pull', () => gates.length > 0)
  t.equal(count((await ch.request({ t: 'have?', digest: d, pieceSize: PIECE })).res), 0, 'a plain query answers at once: nothing held yet')

  // Held until a piece lands: answered at once, it would say 0.
  const polled = ch.request({ t: 'have?', digest: d, pieceSize: PIECE, after: 0, waitMs: 4000 })
  gates.shift()?.()
  const news = (await polled).res
  t.ok(count(news) >= 1, `answered with the new piece (${count(news)} held)`)
  t.equal(news.t === 'have' && news.pulling, true)

  // No news within the wait: answered with what is held.
  const quiet = (await ch.request({ t: 'have?', digest: d, pieceSize: PIECE, after: count(news), waitMs: 50 })).res
  t.equal(count(quiet), count(news), 'the wait ended: same count')

  open = true
  for (const g of gates.splice(0)) g()
  await pulled
  const whole = (await ch.request({ t: 'have?', digest: d, pieceSize: PIECE, after: 4, waitMs: 4000 })).res
  t.equal(whole.t === 'have' && whole.complete, true, 'a complete blob is answered at once')
})

t.test('a complete blob is served only at the configured piece size: other sizes get a typed refusal, not a re-hash', async t => {
  const { holder: a, puller: b, d } = await holderAndPuller(t, 6 * PIECE)
  const ch = new PeerChannel(a.id, await b.libp2p.dialProtocol(a.libp2p.peerId, PIECES_PROTOCOL), 5000, b.ex.buffers)
  t.teardown(() => { ch.close() })
  const manifests = async (): Promise<string[]> => (await readdir(join(a.dir, 'meta', 'pieces')).catch(() => [])).filter(f => !f.endsWith(`.${PIECE}`))
  for (const size of [MIN_PIECE_SIZE, PIECE * 2, 1024 * 1024, MAX_PIECE_SIZE]) {
    for (const req of [{ t: 'have?' as const, digest: d, pieceSize: size }, { t: 'manifest?' as const, digest: d, pieceSize: size }, { t: 'piece?' as const, digest: d, pieceSize: size, index: 0 }]) {
      const { res } = await ch.request(req)
      t.equal(res.t === 'err' ? res.code : res.t, 'bad-request', `${req.t} at ${size}: refused`)
      t.match(res.t === 'err' ? res.message : '', /^UnsupportedPieceSizeError: piece size \d+ is not served here/, 'with the typed error\'s name and what is served')
    }
  }
  t.same(await manifests(), [], 'no manifest was computed for any other piece size')
  const ok = await ch.request({ t: 'have?', digest: d, pieceSize: PIECE })
  t.equal(ok.res.t, 'have', 'the configured size is still served')
})

t.test('markDead drops a peer at once; upload slots 0 serve nothing', async t => {
  const { holder: edge, puller: b, data, d } = await holderAndPuller(t, 3 * PIECE, { uploadSlots: 0 })
  const reg = countingRegistry(data)
  const stats = await b.ex.pull(d, { size: data.length, candidates: [edge.id], registry: reg.fn })
  t.equal(stats.bytesFromPeers, 0)
  t.equal(stats.bytesFromRegistry, data.length)
  t.equal(edge.ex.counters.bytesServed, 0)
})

t.test('4 nodes pull the same blob at the same moment: registry egress stays near one copy', async t => {
  const nodes = await Promise.all([0, 1, 2, 3].map(async () => await mkNode(t)))
  for (let i = 0; i < nodes.length; i++) for (let j = i + 1; j < nodes.length; j++) await connect(nodes[i]!, nodes[j]!)
  const data = randomBytes(48 * PIECE)
  const d = sha256Digest(data)
  const reg = countingRegistry(data)
  const stats = await Promise.all(nodes.map(async n => await n.ex.pull(d, { size: data.length, candidates: nodes.filter(o => o !== n).map(o => o.id), registry: reg.fn })))
  for (const n of nodes) t.same(Buffer.from(await n.store.readAll(d)), data)
  const total = stats.reduce((s, x) => s + x.bytesFromRegistry, 0)
  t.equal(total, reg.bytes())
  t.ok(reg.bytes() <= 1.5 * data.length, `registry egress ${(reg.bytes() / data.length).toFixed(2)}× the blob`)
  for (const n of nodes) t.same(await readdir(join(n.dir, 'partial')), [], 'no partial left')
})

t.test('a pull the registry keeps failing says the registry\'s last error', async t => {
  const a = await mkNode(t)
  const data = randomBytes(3 * PIECE)
  const d = sha256Digest(data)
  let calls = 0
  const registry = async (): Promise<Uint8Array> => { calls++; throw new Error('HTTP 503 from the upstream registry') }
  const err = await a.ex.pull(d, { size: data.length, registry }).then(() => undefined, (e: Error) => e)
  t.ok(calls > 0, 'the registry was asked')
  t.match(err, { name: 'PullFailedError', message: /registry failed \d+ times in a row \(last error: HTTP 503 from the upstream registry\)/ })
  t.match((err as Error & { cause?: Error }).cause, { message: 'HTTP 503 from the upstream registry' }, 'the cause is kept')
  t.notOk(await a.store.has(d))
})

t.test('replicate requests to K peers at once read each small blob once, and keep nothing after', async t => {
  const a = await mkNode(t)
  const peers = [await mkNode(t), await mkNode(t)]
  const blobs = await Promise.all([100, 5000, 60_000].map(async n => {
    const data = randomBytes(n)
    const digest = sha256Digest(data)
    await a.store.put(data, digest)
    return { digest, size: n, data }
  }))
  const got = new Map<string, string[]>()
  for (const p of peers) {
    await connect(a, p)
    p.ex.setReplicateHandler(async (_from, _owner, rb) => {
      got.set(p.id, rb.map(b => b.data !== undefined ? sha256Digest(b.data) : 'pulled'))
    })
  }
  let reads = 0
  const readAll = a.store.readAll.bind(a.store)
  a.store.readAll = async (d: string) => { reads++; return await readAll(d) }
  const ask = blobs.map(b => ({ digest: b.digest, size: b.size }))
  await Promise.all(peers.map(async p => { await a.ex.requestReplicate(p.id, 'object:x', ask) }))
  t.equal(reads, 3, 'one read per blob for both peers')
  for (const p of peers) t.same(got.get(p.id), blobs.map(b => b.digest), 'each peer got every blob\'s bytes, intact')
  await a.ex.requestReplicate(peers[0]!.id, 'object:x', ask)
  t.equal(reads, 6, 'a later request reads again: nothing was kept')
})
