import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { AGENT_JIT_FLAGS, tuneJit } from '../../agent/jit-tuning.js'

const run = promisify(execFile)

/**
 * A child process that (unless `none`) calls tuneJit as the agent does once
 * ready, then compiles a new function, calls it once, and prints whether V8
 * runs it as baseline code or interprets it (V8's status bits: 1 << 15
 * baseline, 1 << 7 interpreted).
 */
async function tierAfterOneCall (profile: 'lan' | 'edge' | 'none'): Promise<{ baseline: boolean, interpreted: boolean }> {
  const mod = new URL('../../agent/jit-tuning.js', import.meta.url).href
  const script = `
    const { tuneJit } = await import(${JSON.stringify(mod)})
    if (${JSON.stringify(profile)} !== 'none') tuneJit({ profile: ${JSON.stringify(profile)} })
    const f = new Function('a', 'b', 'let s = 0; for (let i = 0; i < a; i++) s += i * b; return s')
    f(3, 4)
    const status = %GetOptimizationStatus(f)
    process.stdout.write(JSON.stringify({ baseline: (status & (1 << 15)) !== 0, interpreted: (status & (1 << 7)) !== 0 }))
  `
  const { stdout } = await run(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', script], { timeout: 60_000 })
  return JSON.parse(stdout) as { baseline: boolean, interpreted: boolean }
}

t.test('the edge profile keeps the default compiler tiers; the others get the flag', async t => {
  t.same(tuneJit({ profile: 'edge' }), [])
  t.same(tuneJit({ profile: 'lan' }), AGENT_JIT_FLAGS)
})

t.test('set after start, a function compiled later runs as baseline code from its first call', async t => {
  t.same(await tierAfterOneCall('none'), { baseline: false, interpreted: true }, 'default: interpreted until warm')
  t.same(await tierAfterOneCall('edge'), { baseline: false, interpreted: true }, 'edge profile: the default')
  t.same(await tierAfterOneCall('lan'), { baseline: true, interpreted: false }, 'tuned: baseline at once')
})
