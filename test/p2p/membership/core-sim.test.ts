// Seeded simulations of N SWIM cores over a lossy network: failure detection
// within the Lifeguard bound, refutation, graceful leave, no false deaths under
// 5% loss, restart with a higher incarnation, local health. Each test names
// its seed; a failure replays exactly.
import t from 'tap'
import { SimCluster } from './sim-network.js'
import { simSigner } from './sim-left.js'
import { LAN, profile } from '../../../p2p/membership/profiles.js'
import { suspicionBoundMs, suspicionMaxMs } from '../../../p2p/membership/core/suspicion.js'

const TICKS_PER_S = 1000 / LAN.tickMs

/** Joins every node through n0; the tick at which all see all alive, or null. */
function joinAll (sim: SimCluster, within = 30 * TICKS_PER_S): number | null {
  sim.joinAll()
  return sim.runUntil(() => sim.converged(), within)
}

t.test('join: 8 nodes through one seed converge', async t => {
  const sim = new SimCluster({ n: 8, seed: 1, config: LAN })
  t.not(joinAll(sim, 10 * TICKS_PER_S), null, 'all nodes see each other alive')
  t.ok(sim.now <= 5 * TICKS_PER_S, `converged in ${sim.now} ticks`)
  for (const id of sim.ids()) t.equal(sim.core(id).members().length, 8)
})

t.test('kill: the failed node is suspected, then dead everywhere within the bound', async t => {
  const n = 8
  const sim = new SimCluster({ n, seed: 2, config: LAN })
  t.not(joinAll(sim), null, 'all nodes see each other alive')
  sim.run(20 * TICKS_PER_S)
  const killedAt = sim.now
  sim.crash('n3')
  const boundTicks = suspicionBoundMs(LAN, n) / LAN.tickMs
  const deadAt = sim.runUntil(() => sim.allSee('n3', 'dead'), 3 * boundTicks)
  t.not(deadAt, null, 'n3 declared dead by all')
  const took = (deadAt ?? Infinity) - killedAt
  t.ok(took <= boundTicks + LAN.probeIntervalMs / LAN.tickMs, `dead after ${took} ticks; bound ${boundTicks} + one probe interval`)
  t.ok(took < suspicionMaxMs(LAN, n) / LAN.tickMs, 'independent confirmations shortened the suspicion below its maximum (Lifeguard)')
  const suspects = sim.log.filter(e => e.id === 'n3' && e.kind === 'suspect')
  t.ok(suspects.length > 0, 'suspected before dead')
  const firstSuspect = Math.min(...suspects.map(e => e.tick))
  const firstDead = Math.min(...sim.log.filter(e => e.id === 'n3' && e.kind === 'dead').map(e => e.tick))
  t.ok(firstSuspect < firstDead, 'suspect precedes dead')
  t.ok(sim.core('n0').stats().probesFailed > 0)
  // Reaped after the reclaim time, never resurrected.
  const reaped = sim.runUntil(() => sim.upIds().every(o => sim.core(o).member('n3') === undefined), LAN.reclaimMs / LAN.tickMs + 20 * TICKS_PER_S)
  t.not(reaped, null, 'dead member reaped after reclaimMs')
  sim.run(10 * TICKS_PER_S)
  t.ok(sim.upIds().every(o => sim.core(o).member('n3') === undefined), 'not resurrected by stale news')
})

t.test('32 nodes: join through one seed, then a kill is detected within the bound', async t => {
  const n = 32
  const sim = new SimCluster({ n, seed: 32, config: LAN })
  const at = joinAll(sim, 30 * TICKS_PER_S)
  t.not(at, null, 'all 32 see 32 alive')
  t.comment(`converged after ${(at ?? 0) / TICKS_PER_S} simulated s`)
  const killedAt = sim.now
  sim.crash('n17')
  const deadAt = sim.runUntil(() => sim.allSee('n17', 'dead'), 2 * suspicionBoundMs(LAN, n) / LAN.tickMs)
  t.not(deadAt, null)
  const tookMs = ((deadAt ?? Infinity) - killedAt) * LAN.tickMs
  t.ok(tookMs <= suspicionBoundMs(LAN, n) + LAN.probeIntervalMs, `dead everywhere after ${tookMs} ms; bound ${suspicionBoundMs(LAN, n)} ms`)
  t.ok(sim.maxMessageBytes <= 64 * 1024)
})

t.test('refutation: a briefly unreachable node is suspected and refutes with a higher incarnation', async t => {
  const sim = new SimCluster({ n: 8, seed: 3, config: LAN })
  t.not(joinAll(sim), null, 'all nodes see each other alive')
  sim.run(5 * TICKS_PER_S)
  const before = sim.core('n2').incarnation()
  sim.isolate('n2')
  const suspected = sim.runUntil(() => sim.upIds().some(o => sim.stateOf(o, 'n2') === 'suspect'), 10 * TICKS_PER_S)
  t.not(suspected, null, 'n2 suspected while cut off')
  sim.heal()
  const back = sim.runUntil(() => sim.allSee('n2', 'alive'), 20 * TICKS_PER_S)
  t.not(back, null, 'alive again everywhere')
  t.ok(sim.core('n2').incarnation() > before, `refuted at incarnation ${sim.core('n2').incarnation()} > ${before}`)
  t.ok(sim.core('n2').stats().selfRefutations > 0)
  t.equal(sim.log.filter(e => e.id === 'n2' && e.kind === 'dead').length, 0, 'never declared dead')
  t.ok(sim.log.some(e => e.id === 'n2' && e.kind === 'alive'), 'others saw the suspicion refuted')
  const refuted = sim.upIds().filter(o => o !== 'n2').reduce((s, o) => s + sim.core(o).stats().suspicionsRefuted, 0)
  t.ok(refuted > 0, 'suspicionsRefuted counted')
})

t.test('leave: others see left, never dead, and stale alive news does not resurrect it', async t => {
  const sim = new SimCluster({ n: 8, seed: 4, config: LAN })
  t.not(joinAll(sim), null, 'all nodes see each other alive')
  const inc = sim.core('n5').incarnation()
  sim.core('n5').leave(simSigner('n5'))
  sim.run(2) // the leave messages go out on the next steps
  sim.crash('n5') // the process exits right after leaving
  const left = sim.runUntil(() => sim.allSee('n5', 'left'), 10 * TICKS_PER_S)
  t.not(left, null, 'all see n5 left')
  sim.run(60 * TICKS_PER_S)
  t.ok(sim.allSee('n5', 'left'), 'still left a minute later')
  t.equal(sim.log.filter(e => e.id === 'n5' && (e.kind === 'dead' || e.kind === 'suspect')).length, 0, 'never suspect or dead')
  t.ok(sim.upIds().filter(o => o !== 'n5').every(o => (sim.core(o).member('n5')?.incarnation ?? 0) > inc), 'left carries a higher incarnation')
})

t.test('5% loss for 10 simulated minutes: no false dead, no false suspicion that sticks', async t => {
  const sim = new SimCluster({ n: 16, seed: 5, config: LAN, loss: 0.05 })
  t.not(joinAll(sim, 60 * TICKS_PER_S), null, 'all nodes see each other alive')
  sim.run(600 * TICKS_PER_S)
  const dead = sim.log.filter(e => e.kind === 'dead')
  t.equal(dead.length, 0, `false dead verdicts: ${dead.length}`)
  t.ok(sim.converged(), 'everyone alive at the end')
  const suspects = sim.log.filter(e => e.kind === 'suspect').length
  const probes = sim.ids().reduce((s, id) => s + sim.core(id).stats().probesSent, 0)
  t.comment(`probes ${probes}, suspicions seen ${suspects}, messages ${sim.messagesSent}, largest message ${sim.maxMessageBytes} B`)
})

t.test('10% loss (a 5% fault hook at both ends) for 5 simulated minutes, three seeds: no false dead', async t => {
  for (const seed of [51, 52, 53]) {
    const sim = new SimCluster({ n: 16, seed, config: LAN, loss: 0.1 })
    t.not(joinAll(sim, 60 * TICKS_PER_S), null, `seed ${seed}: joined`)
    sim.run(300 * TICKS_PER_S)
    t.equal(sim.log.filter(e => e.kind === 'dead').length, 0, `seed ${seed}: no false dead (${sim.log.filter(e => e.kind === 'suspect').length} suspicions seen, all refuted)`)
  }
})

t.test('restart after kill: same id comes back alive with a higher incarnation', async t => {
  const sim = new SimCluster({ n: 6, seed: 6, config: LAN })
  t.not(joinAll(sim), null, 'all nodes see each other alive')
  sim.crash('n4')
  const dead = sim.runUntil(() => sim.allSee('n4', 'dead'), 60 * TICKS_PER_S)
  t.not(dead, null, 'n4 dead')
  const deadInc = sim.core('n0').member('n4')?.incarnation ?? -1
  sim.restart('n4')
  const back = sim.runUntil(() => sim.allSee('n4', 'alive') && sim.converged(), 20 * TICKS_PER_S)
  t.not(back, null, 'n4 alive again everywhere')
  for (const o of sim.upIds()) t.ok((sim.core(o).member('n4')?.incarnation ?? 0) > deadInc, `${o} sees a higher incarnation than the dead one (${deadInc})`)
  t.ok(sim.log.some(e => e.id === 'n4' && e.kind === 'joined' && e.tick > (dead ?? 0)), 'joined event for the comeback')
})

t.test('restart with a lost (stale) incarnation: the node refutes its own death', async t => {
  const sim = new SimCluster({ n: 5, seed: 7, config: LAN })
  t.not(joinAll(sim), null, 'all nodes see each other alive')
  // Drive n1's incarnation up with metadata updates, then lose what was persisted.
  for (let i = 0; i < 5; i++) sim.core('n1').updateMeta({ ...sim.core('n1').member('n1')!.meta, labels: { v: String(i) } })
  sim.run(3 * TICKS_PER_S)
  sim.crash('n1')
  t.not(sim.runUntil(() => sim.allSee('n1', 'dead'), 60 * TICKS_PER_S), null, 'n1 dead')
  sim.nodes.get('n1')!.persistedIncarnation = 0
  sim.restart('n1')
  t.not(sim.runUntil(() => sim.allSee('n1', 'alive'), 20 * TICKS_PER_S), null, 'alive again: it learned of its death by push-pull and refuted')
})

t.test('metadata update reaches everyone as an update event', async t => {
  const sim = new SimCluster({ n: 6, seed: 8, config: LAN })
  t.not(joinAll(sim), null, 'all nodes see each other alive')
  const meta = { ...sim.core('n2').member('n2')!.meta, labels: { zone: 'b' }, resources: { cpus: 8, memoryBytes: 1 << 30, gpus: [{ vendor: 'nvidia', model: 'H100', memoryBytes: 80e9, index: 0 }] } }
  sim.core('n2').updateMeta(meta)
  const done = sim.runUntil(() => sim.upIds().every(o => sim.core(o).member('n2')?.meta.labels.zone === 'b'), 10 * TICKS_PER_S)
  t.not(done, null, 'new metadata everywhere')
  t.equal(sim.log.filter(e => e.id === 'n2' && e.kind === 'updated' && e.observer !== 'n2').length, 5)
  t.equal(sim.core('n0').member('n2')?.meta.resources.gpus[0]?.model, 'H100')
})

t.test('local health: a node that hears nothing back slows its probing', async t => {
  const sim = new SimCluster({ n: 6, seed: 9, config: LAN })
  t.not(joinAll(sim), null, 'all nodes see each other alive')
  const healthyProbes = sim.core('n1').stats().probesSent
  sim.deafen('n1')
  sim.run(30 * TICKS_PER_S)
  t.ok(sim.core('n1').healthScore() > 0, `health score ${sim.core('n1').healthScore()}`)
  t.equal(sim.core('n1').healthScore(), LAN.awarenessMaxMultiplier - 1, 'saturates at the max multiplier')
  const deafProbes = sim.core('n1').stats().probesSent - healthyProbes
  t.ok(deafProbes < 30 / 2, `probed ${deafProbes} times in 30 s instead of ~30`)
  sim.heal()
  sim.run(90 * TICKS_PER_S)
  t.ok(sim.core('n1').healthScore() < LAN.awarenessMaxMultiplier - 1, 'recovers once acks arrive again')
})

t.test('partition of one node beyond the timeout: dead, then back after healing', async t => {
  const cfg = profile('lan', { gossipToTheDeadMs: 120_000 })
  const sim = new SimCluster({ n: 5, seed: 10, config: cfg })
  t.not(joinAll(sim), null, 'all nodes see each other alive')
  sim.isolate('n3')
  t.not(sim.runUntil(() => sim.allSee('n3', 'dead'), 60 * TICKS_PER_S), null, 'cut-off node declared dead')
  sim.heal()
  // The dead node still gets gossip (gossip to the dead), hears of its death and refutes.
  t.not(sim.runUntil(() => sim.converged(), 120 * TICKS_PER_S), null, 'alive again after healing')
})
