import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { AGENT_GC_FLAGS, tuneGc } from '../../agent/gc-tuning.js'

const run = promisify(execFile)

/**
 * A child process that churns memory and prints how many full (major)
 * collections V8 ran meanwhile. `tune`: call tuneGc first, as the agent does
 * after reading its config. `churn`:
 * - 'buffers': 1 GiB of 4 MiB buffers, at most 5 alive at once;
 * - 'objects': 300,000 small objects kept alive, each replaced 30 times, so
 *   what dies has lived long enough to reach the old generation.
 */
async function majorCollections (tune: 'lan' | 'edge' | 'none', churn: 'buffers' | 'objects' = 'buffers', nodeArgs: string[] = []): Promise<number> {
  const mod = new URL('../../agent/gc-tuning.js', import.meta.url).href
  const script = `
    import { PerformanceObserver, constants } from 'node:perf_hooks'
    const { tuneGc } = await import(${JSON.stringify(mod)})
    if (${JSON.stringify(tune)} !== 'none') tuneGc({ profile: ${JSON.stringify(tune)} })
    let major = 0
    const obs = new PerformanceObserver(list => { for (const e of list.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++ })
    obs.observe({ entryTypes: ['gc'] })
    if (${JSON.stringify(churn)} === 'buffers') {
      const alive = []
      for (let i = 0; i < 256; i++) {
        const b = new Uint8Array(4 << 20); b[0] = i; alive.push(b)
        if (alive.length > 4) alive.shift()
        if (i % 8 === 0) await new Promise(r => setImmediate(r))
      }
    } else {
      const live = new Array(300000)
      for (let i = 0; i < live.length; i++) live[i] = { i, s: 'x' + i, a: [i, i + 1] }
      for (let round = 0; round < 30; round++) {
        for (let i = 0; i < live.length; i++) live[i] = { i: round, s: 'y' + i, a: [i, round] }
        await new Promise(r => setImmediate(r))
      }
    }
    await new Promise(r => setTimeout(r, 50))
    obs.disconnect()
    process.stdout.write(String(major))
  `
  const { stdout } = await run(process.execPath, [...nodeArgs, '--input-type=module', '-e', script], { timeout: 60_000 })
  return Number(stdout)
}

t.test('the edge profile keeps the default runtime; the others get the flags', async t => {
  t.same(tuneGc({ profile: 'edge' }), [])
  t.same(tuneGc({ profile: 'lan' }), AGENT_GC_FLAGS)
  t.same(tuneGc(undefined), AGENT_GC_FLAGS)
})

t.test('buffer churn no longer forces full collections once tuned', async t => {
  const plain = await majorCollections('none')
  const edge = await majorCollections('edge')
  const tuned = await majorCollections('lan')
  // 1 GiB of dead buffers: the default runtime collects the whole heap about once per 64 MB.
  t.ok(plain >= 4, `default runtime: ${plain} full collections`)
  t.ok(edge >= 4, `edge profile (default runtime): ${edge} full collections`)
  t.ok(tuned <= plain / 2, `tuned: ${tuned} full collections, against ${plain} untuned`)
})

t.test('the heap grows further between full collections once tuned, where V8 would keep it tight', async t => {
  // V8 sizes the next collection's limit from how fast its collector seemed;
  // in a contended agent the factor stays small. A small heap cap makes V8
  // choose a small factor here too, without a loaded machine.
  const plain = await majorCollections('none', 'objects', ['--max-old-space-size=256'])
  const tuned = await majorCollections('lan', 'objects', ['--max-old-space-size=256'])
  t.ok(plain >= 8, `default runtime: ${plain} full collections`)
  t.ok(tuned <= plain * 0.75, `tuned: ${tuned} full collections, against ${plain} untuned`)
})

t.test('every flag the agent sets is one this V8 knows (setFlagsFromString ignores unknown ones)', async t => {
  const { stdout } = await run(process.execPath, ['--v8-options'], { timeout: 30_000, maxBuffer: 16 << 20 })
  for (const f of AGENT_GC_FLAGS) {
    const name = f.replace(/^--/, '').replace(/=.*$/, '')
    t.ok(stdout.includes(`--${name} `), `${name} is a V8 flag`)
  }
})

t.test('the young generation stays at its start size once tuned, and compactHeap shrinks a grown one', async t => {
  const mod = new URL('../../agent/gc-tuning.js', import.meta.url).href
  // Prints the young generation's size (KiB) after churn, then after compactHeap.
  const youngAfterChurn = async (tune: boolean): Promise<[number, number]> => {
    const script = `
      import v8 from 'node:v8'
      const { tuneGc, compactHeap } = await import(${JSON.stringify(mod)})
      if (${JSON.stringify(tune)}) tuneGc({ profile: 'lan' })
      const young = () => v8.getHeapSpaceStatistics().find(s => s.space_name === 'new_space').space_size >> 10
      let keep = []
      for (let i = 0; i < 3e6; i++) { const o = { a: i, b: [i, i + 1] }; if (i % 3 === 0) keep.push(o); if (keep.length > 50000) keep = [] }
      keep = []
      const grown = young()
      await compactHeap()
      process.stdout.write(JSON.stringify([grown, young()]))
    `
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 60_000 })
    return JSON.parse(stdout) as [number, number]
  }
  const [plainGrown, plainCompacted] = await youngAfterChurn(false)
  const [tunedGrown] = await youngAfterChurn(true)
  t.ok(tunedGrown < plainGrown, `young generation after churn: ${tunedGrown} KiB tuned, ${plainGrown} KiB untuned`)
  t.ok(plainCompacted < plainGrown, `compactHeap: ${plainGrown} -> ${plainCompacted} KiB`)
})

t.test('after start-up the young generation may grow again under allocation', async t => {
  const mod = new URL('../../agent/gc-tuning.js', import.meta.url).href
  const script = `
    import { getHeapSpaceStatistics } from 'node:v8'
    const { tuneGc, letYoungGenerationGrow } = await import(${JSON.stringify(mod)})
    const young = () => getHeapSpaceStatistics().find(s => s.space_name === 'new_space').space_size
    // Survivors make V8 grow the young generation: keep a window of recent objects alive.
    const churn = () => { const keep = new Array(20000); for (let i = 0; i < 400000; i++) keep[i % keep.length] = { i, s: 'x' + i } }
    tuneGc({ profile: 'lan' })
    churn()
    const pinned = young()
    letYoungGenerationGrow({ profile: 'lan' })
    churn()
    process.stdout.write(JSON.stringify({ pinned, grown: young() }))
  `
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 60_000 })
  const { pinned, grown } = JSON.parse(stdout) as { pinned: number, grown: number }
  t.ok(grown > pinned, `young generation ${pinned} bytes while pinned, ${grown} once allowed to grow`)
})
