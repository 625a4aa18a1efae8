// `npm run sim -- --seeds N [--from S] [--rounds R]`: runs seeds S..S+N-1 and
// stops at the first failure, printing the seed that replays it.
import { parseArgs } from 'node:util'
import { runSeed } from './run.js'

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '100' },
    from: { type: 'string', default: '1' },
    rounds: { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
})
const n = Number(values.seeds)
const from = Number(values.from)
if (!Number.isInteger(n) || n < 1 || !Number.isInteger(from)) {
  console.error(`sim: --seeds must be a positive integer and --from an integer (got --seeds ${values.seeds} --from ${values.from})`)
  process.exit(2)
}
const rounds = values.rounds === undefined ? undefined : Number(values.rounds)
const start = process.hrtime.bigint()
const totals = { proposed: 0, acked: 0, reads: 0, elections: 0, snapshotsSent: 0, confChanges: 0 }
for (let seed = from; seed < from + n; seed++) {
  try {
    const r = runSeed(seed, rounds === undefined ? {} : { rounds })
    totals.proposed += r.proposed
    totals.acked += r.acked
    totals.reads += r.reads
    totals.elections += r.elections
    totals.snapshotsSent += r.snapshotsSent
    totals.confChanges += r.confChanges
    if (values.verbose) console.log(JSON.stringify(r))
  } catch (err) {
    console.error(`FAIL ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`)
    if (err instanceof Error && err.stack !== undefined && values.verbose) console.error(err.stack)
    process.exit(1)
  }
  if ((seed - from + 1) % 1000 === 0) console.log(`${seed - from + 1} seeds ok`)
}
const secs = Number(process.hrtime.bigint() - start) / 1e9
console.log(`sim: ${n} seeds (${from}..${from + n - 1}) passed in ${secs.toFixed(1)} s; ${JSON.stringify(totals)}`)
