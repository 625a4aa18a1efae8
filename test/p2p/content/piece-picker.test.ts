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
  log: string[] = []
  constructor (seed: number) { this.rng = seed >>> 0 || 1 }
  rand (n: number): number { this.rng = (Math.imul(this.rng, 1664525) + 1013904223) >>> 0; return this.rng % n }
  later (node: string, delay: number, apply: () => void): void { this.pending.push({ at: this.now + delay, node, apply }) }
}

/** Runs pullers (ids) against static peers; pullers also serve what they hold to each other. */
function run (opts: { seed: number, pieces: number, pullers: string[], peers: Record<string, SimPeer>, registry: boolean, maxSteps?: number }): { sim: Sim, pickers: Map<string, PiecePicker>, results: Map<string, 'done' | string> } {
  const sim = new Sim(opts.seed)
  const pickers = new Map<string, PiecePicker>()
  const results = new Map<string, 'done' | string>()
  for (const id of opts.pullers) {
    const p = new PiecePicker({ pieceCount: opts.pieces, self: id, registry: opts.registry, queryIntervalMs: 50 }, new Bitfield(opts.pieces), 0)
    for (const other of [...opts.pullers, ...Object.keys(opts.peers)]) p.addPeer(other)
    pickers.set(id, p)
  }
  const alive = (peer: string): boolean => {
    const sp = opts.peers[peer]
    return sp === undefined ? pickers.has(peer) : sp.vanishAt === undefined || sim.now < sp.vanishAt
  }
  const haveOf = (peer: string): { have: Bitfield, pulling: boolean, fetching?: Bitfield } => {
    const sp = opts.peers[peer]
    if (sp !== undefined) return { have: sp.have, pulling: false }
    const pk = pickers.get(peer) as PiecePicker
    return { have: pk.have, pulling: !results.has(peer), fetching: pk.registryFetching() }
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
            pk.peerHave(a.peer, h.have.clone(), h.pulling, h.fetching)
          })
          break
        case 'request':
          sim.later(id, 5 + sim.rand(20), () => {
            if (!alive(a.peer) || !haveOf(a.peer).have.get(a.index)) { pk.failed(a.peer, a.index, sim.now); return }
            sim.peerPieces++
            handle(id, pk, pk.received(a.peer, a.index, opts.peers[a.peer]?.corrupt !== true, sim.now))
          })
          break
        case 'registry':
          sim.registryPieces++
          sim.later(id, 20 + sim.rand(20), () => handle(id, pk, pk.received('registry', a.index, true, sim.now)))
          break
        case 'ban': sim.log.push(`${id} bans ${a.peer}`); break
        case 'drop': sim.log.push(`${id} drops ${a.peer}`); break
      }
    }
  }
  const maxSteps = opts.maxSteps ?? 100_000
  for (let step = 0; step < maxSteps && results.size < pickers.size; step++) {
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
