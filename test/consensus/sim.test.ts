// The deterministic simulator over many seeds: safety after every step,
// convergence and durability of acknowledged writes at the end of each run.
// SIM_SEEDS / SIM_FROM widen the run; a failure names the seed that replays it.
import t from 'tap'
import { runSeed } from '../../consensus/sim/run.js'

const seeds = Number(process.env.SIM_SEEDS ?? '600')
const from = Number(process.env.SIM_FROM ?? '1')

t.test(`simulator: ${seeds} seeds from ${from}`, async t => {
  let acked = 0
  let snapshots = 0
  let confChanges = 0
  for (let seed = from; seed < from + seeds; seed++) {
    const r = runSeed(seed)
    acked += r.acked
    snapshots += r.snapshotsSent
    confChanges += r.confChanges
  }
  t.ok(acked > seeds * 10, `acknowledged ${acked} writes`)
  t.ok(snapshots > 0, `sent ${snapshots} snapshot chunks`)
  t.ok(confChanges > 0, `made ${confChanges} membership changes`)
})

t.test('a seed replays exactly', async t => {
  t.same(runSeed(4242), runSeed(4242))
})
