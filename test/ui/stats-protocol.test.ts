// `/bolt/stats/1` over real stream pairs: the figures a node reads come
// back to the asking node; a node that refuses says why; any bytes a
// member sends decode to a checked reply or one WireDecodeError.
import t from 'tap'
import fc from 'fast-check'
import { streamPair } from '@libp2p/utils'
import { encode } from 'cbor-x'
import type { Connection } from '@libp2p/interface'
import { fetchStats, statsHandler, StatsReply, StatsRequest, MAX_STATS_FRAME } from '../../agent/ui/stats-protocol.js'
import { decodeFrame } from '../../p2p/wire.js'

const conn = {} as unknown as Connection

t.test('figures read on the node that runs the instance reach the asker', async t => {
  const [out, inb] = await streamPair()
  const asked: string[] = []
  statsHandler(async (name) => { asked.push(name); return { cpuNanos: 12_000_000, memoryBytes: 4096, memoryLimitBytes: null, pids: 3 } })(inb, conn)
  const r = await fetchStats(out, 'web-0', AbortSignal.timeout(5000))
  t.same(asked, ['web-0'])
  t.same(r.stats, { cpuNanos: 12_000_000, memoryBytes: 4096, memoryLimitBytes: null, pids: 3 })
  t.ok(r.time > 0, 'with the time it was read there')
})

t.test('an instance not on that node: the asker gets the reason as an error', async t => {
  const [out, inb] = await streamPair()
  statsHandler(async (name) => { throw new Error(`${name} does not run on this node`) })(inb, conn)
  await t.rejects(fetchStats(out, 'web-1', AbortSignal.timeout(5000)), /web-1 does not run on this node/)
})

t.test('decoders: any bytes give a checked value or a WireDecodeError', async t => {
  const arb = fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    fc.anything().map(v => { try { return encode(v) as Uint8Array } catch { return new Uint8Array() } }), // cbor-x cannot encode every value: an empty frame then
    fc.record({ t: fc.constantFrom('stats', 'error', 'x'), stats: fc.option(fc.record({ cpuNanos: fc.double(), memoryBytes: fc.double(), memoryLimitBytes: fc.option(fc.double()), pids: fc.integer() })), time: fc.double(), message: fc.string() }).map(v => encode(v) as Uint8Array)
  )
  fc.assert(fc.property(arb, (bytes) => {
    for (const schema of [StatsReply, StatsRequest]) {
      try {
        const v = decodeFrame(schema as typeof StatsReply, bytes, MAX_STATS_FRAME)
        if ('t' in v && v.t === 'stats' && v.stats !== null) {
          if (!(Number.isFinite(v.stats.cpuNanos) && v.stats.cpuNanos >= 0 && v.stats.memoryBytes >= 0)) return false
        }
      } catch (err) {
        if ((err as Error).name !== 'WireDecodeError') return false
      }
    }
    return true
  }), { numRuns: 500 })
  t.pass('no other error, no negative or infinite figure')
})
