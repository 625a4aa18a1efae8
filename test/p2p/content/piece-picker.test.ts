// Deterministic simulation of the piece picker: seeded delays, simulated
// peers (complete, partial, corrupt, vanishing) and several pullers at once
// sharing one registry. Invariants are checked after every step.
import t from 'tap'
import fc from 'fast-check'
import { Bitfield } from '../../../p2p/content/bitfield.js'
import { PiecePicker, type PickerAction } from '../../../p2p/content/piece-picker.js'

interface SimPeer { have: Bitfield, corrupt?: boolean, vanishAt?: number }
interface Pending { at: number, node: string, apply: () => void }

class Sim {
  now = 0
  pending: Pending[] = []
  rng: number
  registryPieces = 0
  peerPieces = 0
  /** Pieces each peer (or puller) sent. */
  served = new Map<string, number>()
  log: string[] = []
  constructor (seed: number) { this.rng = seed >>> 0 || 1 }
  rand (n: number): number { this.rng = (Math.imul(this.rng, 1664525) + 1013904223) >>> 0; return this.rng % n }
  later (node: string, delay: number, apply: () => void): void { this.pending.push({ at: this.now + delay, node, apply }) }
}

/** Runs pullers (ids) against static peers; pullers also serve what they hold to each other. */
interface RunOptions {
  seed: number
  pieces: number
  pullers: string[]
  peers: Record<string, SimPeer>
  registry: boolean
  maxSteps?: number
  /** When each puller starts (default 0). */
  starts?: Record<string, number>
  /** A registry piece takes base + rand(spread) steps (default 20 + rand(20)). */
  registryDelay?: [number, number]
  picker?: Partial<ConstructorParameters<typeof PiecePicker>[0]>
}

function run (opts: RunOptions): { sim: Sim, pickers: Map<string, PiecePicker>, results: Map<string, 'done' | string> } {
  const sim = new Sim(opts.seed)
  const pickers = new Map<string, PiecePicker>()
  const results = new Map<string, 'done' | string>()
  const startPullers = (): void => {
    for (const id of opts.pullers) {
      if (pickers.has(id) || sim.now < (opts.starts?.[id] ?? 0)) continue
      const p = new PiecePicker({ pieceCount: opts.pieces, self: id, registry: opts.registry, queryIntervalMs: 50, ...opts.picker }, new Bitfield(opts.pieces), sim.now)
      for (const other of [...opts.pullers, ...Object.keys(opts.peers)]) p.addPeer(other)
      pickers.set(id, p)
    }
  }
  const alive = (peer: string): boolean => {
    const sp = opts.peers[peer]
    // A puller that has not started yet is up: it answers that it holds nothing.
    return sp === undefined ? opts.pullers.includes(peer) : sp.vanishAt === undefined || sim.now < sp.vanishAt
  }
  const haveOf = (peer: string): { have: Bitfield, pulling: boolean, fetching?: Bitfield, now?: Bitfield } => {
    const sp = opts.peers[peer]
    if (sp !== undefined) return { have: sp.have, pulling: false }
    const pk = pickers.get(peer)
    if (pk === undefined) return { have: new Bitfield(opts.pieces), pulling: false }
    return { have: pk.have, pulling: !results.has(peer), fetching: pk.registryFetching(), now: pk.registryInFlight() }
  }
  const handle = (id: string, pk: PiecePicker, actions: PickerAction[]): void => {
    for (const a of actions) {
      switch (a.type) {
        case 'done': results.set(id, 'done'); break
        case 'fail': results.set(id, a.reason); break
        case 'query':
          sim.later(id, 1 + sim.rand(5), () => {
            if (!alive(a.peer)) { pk.queryFailed(a.peer); return }
            const h = haveOf(a.peer)
            pk.peerHave(a.peer, h.have.clone(), h.pulling, h.fetching, h.now)
          })
          break
        case 'request':
          sim.later(id, 5 + sim.rand(20), () => {
            if (!alive(a.peer) || !haveOf(a.peer).have.get(a.index)) { pk.failed(a.peer, a.index, sim.now); return }
            sim.peerPieces++
            sim.served.set(a.peer, (sim.served.get(a.peer) ?? 0) + 1)
            handle(id, pk, pk.received(a.peer, a.index, opts.peers[a.peer]?.corrupt !== true, sim.now))
          })
          break
        case 'registry': {
          sim.registryPieces++
          const [base, spread] = opts.registryDelay ?? [20, 20]
          sim.later(id, base + sim.rand(spread), () => handle(id, pk, pk.received('registry', a.index, true, sim.now)))
          break
        }
        case 'ban': sim.log.push(`${id} bans ${a.peer}`); break
        case 'drop': sim.log.push(`${id} drops ${a.peer}`); break
      }
    }
  }
  const maxSteps = opts.maxSteps ?? 100_000
  for (let step = 0; step < maxSteps && results.size < opts.pullers.length; step++) {
    startPullers()
    for (const [id, pk] of pickers) {
      if (results.has(id)) continue
      handle(id, pk, pk.tick(sim.now))
      pk.checkInvariants()
    }
    const due = sim.pending.filter(p => p.at <= sim.now)
    sim.pending = sim.pending.filter(p => p.at > sim.now)
    for (const d of due) { if (!results.has(d.node)) d.apply(); pickers.get(d.node)?.checkInvariants() }
    sim.now += 1
  }
  return { sim, pickers, results }
}

t.test('one complete peer: everything comes from it, nothing from the registry', async t => {
  const { sim, results } = run({ seed: 1, pieces: 20, pullers: ['A'], peers: { S: { have: Bitfield.full(20) } }, registry: true })
  t.equal(results.get('A'), 'done')
  t.equal(sim.registryPieces, 0)
  t.equal(sim.peerPieces >= 20, true)
})

t.test('rarest first: the piece only one peer has is asked for first', async t => {
  const common = Bitfield.full(10)
  const rare = new Bitfield(10)
  rare.set(7)
  const partial = Bitfield.full(10)
  partial.set(7, false)
  const pk = new PiecePicker({ pieceCount: 10, self: 'A', registry: false, maxInflightPerPeer: 1 }, new Bitfield(10), 0)
  pk.addPeer('P1'); pk.addPeer('P2'); pk.addPeer('P3')
  pk.peerHave('P1', partial, false)
  pk.peerHave('P2', partial, false)
  pk.peerHave('P3', (() => { const b = common.clone(); return b })(), false)
  const first = pk.tick(1).filter(a => a.type === 'request')
  t.same(first.find(a => a.type === 'request' && a.peer === 'P3'), { type: 'request', peer: 'P3', index: 7 })
  pk.checkInvariants()
})

t.test('a corrupt peer is banned and its pieces come from an honest one', async t => {
  const { sim, results, pickers } = run({ seed: 7, pieces: 16, pullers: ['A'], peers: { BAD: { have: Bitfield.full(16), corrupt: true }, GOOD: { have: Bitfield.full(16) } }, registry: false })
  t.equal(results.get('A'), 'done')
  t.same(pickers.get('A')?.bannedPeers(), ['BAD'])
  t.ok(sim.log.includes('A bans BAD'))
})

t.test('the only peer vanishes mid-pull: the registry serves the rest', async t => {
  const { sim, results, pickers } = run({ seed: 3, pieces: 30, pullers: ['A'], peers: { S: { have: Bitfield.full(30), vanishAt: 60 } }, registry: true })
  t.equal(results.get('A'), 'done')
  t.ok(sim.registryPieces > 0 && sim.registryPieces < 30, `registry served ${sim.registryPieces} of 30`)
  t.equal(pickers.get('A')?.fromRegistry.size, sim.registryPieces)
})

t.test('no registry and no peer with the pieces: the pull fails instead of hanging', async t => {
  const { results } = run({ seed: 5, pieces: 4, pullers: ['A'], peers: { S: { have: new Bitfield(4) } }, registry: false, maxSteps: 40_000 })
  t.match(results.get('A'), /no peer delivered/)
})

t.test('4 pullers at once share the registry: egress stays near one copy', async t => {
  // (Pullers tell each other which pieces they claim for the registry.)
  for (const seed of [11, 12, 13]) {
    const { sim, results } = run({ seed, pieces: 64, pullers: ['n1', 'n2', 'n3', 'n4'], peers: {}, registry: true })
    t.same([...results.values()], ['done', 'done', 'done', 'done'], `seed ${seed}`)
    t.ok(sim.registryPieces <= 64 * 1.2, `seed ${seed}: registry served ${sim.registryPieces} pieces for 64`)
  }
})

t.test('property: any peers, any corruption, any vanishing — invariants hold and a pull with a registry completes', async t => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 2 ** 31 }),
    fc.integer({ min: 1, max: 24 }),
    fc.array(fc.record({ bits: fc.array(fc.boolean(), { minLength: 24, maxLength: 24 }), corrupt: fc.boolean(), vanishAt: fc.option(fc.integer({ min: 0, max: 300 }), { nil: undefined }) }), { maxLength: 4 }),
    fc.integer({ min: 1, max: 3 }),
    (seed, pieces, peerSpecs, pullerCount) => {
      const peers: Record<string, SimPeer> = {}
      peerSpecs.forEach((s, i) => {
        const b = new Bitfield(pieces)
        for (let j = 0; j < pieces; j++) if (s.bits[j] === true) b.set(j)
        peers[`P${i}`] = { have: b, corrupt: s.corrupt, vanishAt: s.vanishAt }
      })
      const pullers = Array.from({ length: pullerCount }, (_, i) => `N${i}`)
      const { results } = run({ seed, pieces, pullers, peers, registry: true, maxSteps: 60_000 })
      for (const id of pullers) if (results.get(id) !== 'done') throw new Error(`${id}: ${results.get(id) ?? 'did not finish'}`)
    }
  ), { numRuns: 60, seed: 42 })
  t.pass('60 random runs')
})

t.test('pieces a peer claims for the registry are not fetched again, until that peer is gone', async t => {
  // C's share under k=2 would be piece 1; B (a lower id) claims both, so C yields.
  const pk = new PiecePicker({ pieceCount: 2, self: 'C', registry: true, registryDeadlineMs: 100, claimSettleMs: 0 }, new Bitfield(2), 0)
  pk.addPeer('B')
  const fetching = new Bitfield(2)
  fetching.set(0)
  fetching.set(1)
  pk.peerHave('B', new Bitfield(2), true, fetching)
  for (let now = 0; now < 300; now += 10) {
    const regs = pk.tick(now).filter(a => a.type === 'registry')
    t.same(regs, [], `t=${now}: waits for B`)
    if (now === 100) t.same(pk.registryFetching().count(), 0, 'C claims nothing')
    pk.checkInvariants()
  }
  pk.peerGone('B')
  const regs = pk.tick(310).filter(a => a.type === 'registry').map(a => a.type === 'registry' ? a.index : -1)
  t.same(regs.sort(), [0, 1], 'B gone: C fetches both')
  t.equal(pk.registryFetching().count(), 2, 'and claims them')
})

t.test('a piece claimed for the registry is fetched only once the claim has stood for claimSettleMs', async t => {
  const pk = new PiecePicker({ pieceCount: 3, self: 'A', registry: true, claimSettleMs: 300 }, new Bitfield(3), 0)
  const regs = (now: number): number => pk.tick(now).filter(a => a.type === 'registry').length
  t.equal(regs(0), 0, 'claimed, not fetched')
  t.equal(pk.registryFetching().count(), 3, 'the claim is visible to peers at once')
  t.equal(regs(299), 0)
  t.equal(regs(300), 3, 'fetched after the settle time')
  pk.checkInvariants()
})

t.test('a piece a peer is fetching from the registry right now is never fetched too, even by a lower id whose share it is', async t => {
  // k = 2 (A and B pulling), A ranks 0: piece 0 is A's share and A has the lower id.
  // B's request for it is under way, so A waits for it instead of racing it.
  const pk = new PiecePicker({ pieceCount: 2, self: 'A', registry: true, claimSettleMs: 0, registryDeadlineMs: 100 }, new Bitfield(2), 0)
  pk.addPeer('B')
  const claims = new Bitfield(2)
  claims.set(0)
  pk.peerHave('B', new Bitfield(2), true, claims, claims.clone())
  const regs = (p: PiecePicker, now: number): number[] => p.tick(now).filter(a => a.type === 'registry').map(a => a.type === 'registry' ? a.index : -1).sort()
  t.same(regs(pk, 0), [], 'piece 0 is under way at B, piece 1 is B\'s share')
  // After the deadline A claims piece 1, which nobody fetches; B, asked
  // again, still lacks it and still fetches piece 0: A fetches piece 1 only.
  const fetched: number[] = []
  for (let now = 100; now < 400; now += 50) { // (past 400 ms without progress B's claims would expire)
    for (const a of pk.tick(now)) {
      if (a.type === 'registry') fetched.push(a.index)
      if (a.type === 'query') pk.peerHave('B', new Bitfield(2), true, claims, claims.clone())
    }
  }
  t.same(fetched, [1], 'A fetches piece 1, which nobody fetches, and never piece 0')
  // The same claim without a request under way: the lower id takes its share.
  const pk2 = new PiecePicker({ pieceCount: 2, self: 'A', registry: true, claimSettleMs: 0, registryDeadlineMs: 100 }, new Bitfield(2), 0)
  pk2.addPeer('B')
  pk2.peerHave('B', new Bitfield(2), true, claims.clone())
  t.same(regs(pk2, 0), [0], 'a mere claim by a higher id does not hold A back from its share')
  pk.checkInvariants()
  pk2.checkInvariants()
})

t.test('a registry claim waits for news from every peer: a piece a peer got since its last answer comes from that peer', async t => {
  const mk = (): PiecePicker => {
    const pk = new PiecePicker({ pieceCount: 1, self: 'A', registry: true, claimSettleMs: 300, registryDeadlineMs: 5000, queryIntervalMs: 200 }, new Bitfield(1), 0)
    pk.addPeer('B')
    return pk
  }
  const acts = (pk: PiecePicker, now: number): string[] => pk.tick(now).map(a => a.type === 'registry' ? `registry ${a.index}` : a.type === 'request' ? `request ${a.peer} ${a.index}` : a.type === 'query' ? `query ${a.peer}` : a.type)

  const pk = mk()
  t.same(acts(pk, 0), ['query B'])
  pk.peerHave('B', new Bitfield(1), true) // answers the query sent at 0: nothing yet
  t.same(acts(pk, 10), [], 'piece 0 is A\'s share: claimed now, settling')
  t.same(acts(pk, 199), [], 'settle time not over')
  t.same(acts(pk, 310), ['query B'], 'settled, but B\'s last answer predates the claim: no registry yet, and B is asked again')
  t.same(acts(pk, 400), [], 'still waiting for B')
  pk.peerHave('B', Bitfield.full(1), true) // B got the piece meanwhile
  t.same(acts(pk, 420), ['request B 0'], 'the piece comes from B, not from the registry')
  pk.checkInvariants()

  // B says nothing new: its fresh answer lets the claim go ahead.
  const pk2 = mk()
  acts(pk2, 0)
  pk2.peerHave('B', new Bitfield(1), true)
  acts(pk2, 10)
  t.same(acts(pk2, 310), ['query B'])
  pk2.peerHave('B', new Bitfield(1), true)
  t.same(acts(pk2, 320), ['registry 0'], 'a fresh answer without the piece: A fetches it')

  // B goes silent: the claim waits no longer than the registry deadline.
  const pk3 = mk()
  acts(pk3, 0)
  pk3.peerHave('B', new Bitfield(1), true)
  acts(pk3, 10)
  t.same(acts(pk3, 310).filter(a => a.startsWith('registry')), [])
  t.same(acts(pk3, 5009).filter(a => a.startsWith('registry')), [], 'not before the deadline')
  t.same(acts(pk3, 5010).filter(a => a.startsWith('registry')), ['registry 0'], 'at the deadline, without B')
})

t.test('endgame duplicates go only to requests out longer than endgameAfterMs', async t => {
  // 2 pieces, 3 complete peers: every piece is in flight at once (endgame from the start).
  const pk = new PiecePicker({ pieceCount: 2, self: 'A', registry: false, maxInflightPerPeer: 1, endgameAfterMs: 500 }, new Bitfield(2), 0)
  for (const p of ['P1', 'P2', 'P3']) { pk.addPeer(p); pk.peerHave(p, Bitfield.full(2), false) }
  const first = pk.tick(0).filter(a => a.type === 'request')
  t.equal(first.length, 2, 'each piece asked once')
  t.same(pk.tick(499).filter(a => a.type === 'request'), [], 'no duplicate before 500 ms')
  const dup = pk.tick(500).filter(a => a.type === 'request')
  t.equal(dup.length, 1, 'the idle peer duplicates one slow piece at 500 ms')
  pk.checkInvariants()
})

t.test('the duplicate threshold follows the pull: four times its average piece time', async t => {
  const pk = new PiecePicker({ pieceCount: 4, self: 'A', registry: false, maxInflightPerPeer: 1, endgameAfterMs: 100 }, new Bitfield(4), 0)
  for (const p of ['P1', 'P2']) { pk.addPeer(p); pk.peerHave(p, Bitfield.full(4), false) }
  const reqs = pk.tick(0).filter(a => a.type === 'request')
  t.equal(reqs.length, 2)
  // Both first pieces take 1 s: the average is 1 s.
  for (const r of reqs) if (r.type === 'request') pk.received(r.peer, r.index, true, 1000)
  const second = pk.tick(1000).filter(a => a.type === 'request')
  t.equal(second.length, 2, 'the last two pieces go out')
  const p1 = second.find(a => a.type === 'request' && a.peer === 'P1')
  if (p1?.type === 'request') pk.received('P1', p1.index, true, 1100)
  // P1's second piece took 0.1 s: the average is now 0.82 s, the threshold 3.28 s.
  t.same(pk.tick(2500).filter(a => a.type === 'request'), [], 'P2 is not duplicated 1.5 s in')
  t.same(pk.tick(4200).filter(a => a.type === 'request'), [], 'nor 3.2 s in, past twice the average')
  t.equal(pk.tick(4300).filter(a => a.type === 'request').length, 1, 'but is once it has been out longer than four times the average')
  pk.checkInvariants()
})

t.test('a request past the timeout drops its peer only when no bytes came from the peer for that long', async t => {
  const pk = new PiecePicker({ pieceCount: 4, self: 'A', registry: false, maxInflightPerPeer: 2, requestTimeoutMs: 1000 }, new Bitfield(4), 0)
  pk.addPeer('B')
  pk.tick(0)
  pk.peerHave('B', Bitfield.full(4), false)
  const asked = pk.tick(10).filter(a => a.type === 'request')
  t.equal(asked.length, 2, 'two pipelined requests')
  // A slow answer: bytes keep coming, the first piece lands after 2.5 s.
  for (const now of [600, 1200, 1800, 2400]) {
    pk.peerProgress('B', now)
    t.same(pk.tick(now).filter(a => a.type === 'drop'), [], `bytes at ${now} ms: B stays`)
  }
  const first = asked[0]
  if (first?.type !== 'request') throw new Error('no request')
  pk.received('B', first.index, true, 2500)
  // Then silence: the requests still out expire a timeout after the last bytes.
  t.same(pk.tick(3300).filter(a => a.type === 'drop'), [], 'silent for 0.9 s: not yet')
  t.same(pk.tick(3500).filter(a => a.type === 'drop'), [{ type: 'drop', peer: 'B', reason: 'timeout' }], 'silent for 1.1 s: dropped')
})

t.test('peerRoom caps the requests to a peer across pulls', async t => {
  const pk = new PiecePicker({ pieceCount: 8, self: 'A', registry: false, maxInflightPerPeer: 4 }, new Bitfield(8), 0)
  pk.addPeer('P1'); pk.addPeer('P2')
  pk.peerHave('P1', Bitfield.full(8), false)
  pk.peerHave('P2', Bitfield.full(8), false)
  const reqs = pk.tick(0, Infinity, Infinity, peer => peer === 'P1' ? 1 : 0).filter(a => a.type === 'request')
  t.same(reqs.map(a => a.type === 'request' ? a.peer : ''), ['P1'], 'one request to P1, none to P2 (no room)')
  pk.checkInvariants()
})

t.test('registryBudget caps registry requests across pulls', async t => {
  const pk = new PiecePicker({ pieceCount: 8, self: 'A', registry: true, claimSettleMs: 0 }, new Bitfield(8), 0)
  t.equal(pk.tick(0, Infinity, 2).filter(a => a.type === 'registry').length, 2)
  t.equal(pk.tick(1, Infinity, 0).filter(a => a.type === 'registry').length, 0)
  pk.checkInvariants()
})

t.test('pullers that start at different moments still take about one copy from the registry', async t => {
  // Staggered starts and slow registry pieces: the first puller sees nobody
  // pulling and claims everything; later ones must yield to what it already
  // fetches (a request under way beats a lower id's claim).
  for (const seed of [21, 22, 23]) {
    const pullers = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6']
    const { sim, results } = run({
      seed, pieces: 48, pullers, peers: {}, registry: true,
      starts: Object.fromEntries(pullers.map((id, i) => [id, i * 15])),
      registryDelay: [200, 100],
      picker: { queryIntervalMs: 20, claimSettleMs: 10, startDelayMs: 50 },
      maxSteps: 200_000
    })
    t.same([...results.values()], pullers.map(() => 'done'), `seed ${seed}: all done`)
    t.ok(sim.registryPieces <= 48 * 1.05, `seed ${seed}: registry served ${sim.registryPieces} pieces for 48`)
  }
})

t.test('two seeds and six pullers: the seeds send about one copy between them, the pullers share the rest', async t => {
  // A push fan-out: the pushed-to member and its replica hold the blob, six
  // members pull it at once. Pullers prefer each other for pieces one of
  // them holds, so a seed's piece goes to one puller and spreads from there.
  for (const seed of [31, 32, 33]) {
    const pieces = 64
    const pullers = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6']
    const { sim, results } = run({ seed, pieces, pullers, peers: { S1: { have: Bitfield.full(pieces) }, S2: { have: Bitfield.full(pieces) } }, registry: false, picker: { queryIntervalMs: 8 }, maxSteps: 200_000 })
    t.same([...results.values()], pullers.map(() => 'done'), `seed ${seed}: all done`)
    const fromSeeds = (sim.served.get('S1') ?? 0) + (sim.served.get('S2') ?? 0)
    t.comment(`seed ${seed}: seeds sent ${fromSeeds} pieces (S1 ${sim.served.get('S1') ?? 0}), pullers ${sim.peerPieces - fromSeeds}, steps ${sim.now}`)
    t.ok(fromSeeds <= pieces * 1.4, `seed ${seed}: the seeds sent ${fromSeeds} pieces for ${pieces}`)
  }
})
