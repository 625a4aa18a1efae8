// cli-latency: how fast client commands answer, as a user types them
// (`bolt-agent status` through bin/bolt-agent.js), against a running one-node
// agent: the median of 20 runs of each, as a ratio to `node -e 0` measured
// interleaved in the same run. Goal (issue 25): every ratio <= 2.5.
import { spawn } from 'node:child_process'
import { loadavg, availableParallelism } from 'node:os'
import { join } from 'node:path'
import { Cluster, waitFor } from '../test/helpers/harness.js'
import { percentile, repoRoot, type Scenario } from './report.js'

const RUNS = 20
const QUICK_RUNS = 5
const GOAL_RATIO = 2.5

/** Wall time of one process from spawn to exit; rejects when it exits with another code than `expect`. */
async function timeOne (argv: string[], expect = 0): Promise<number> {
  const t0 = performance.now()
  await new Promise<void>((resolve, reject) => {
    const c = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    c.stderr.on('data', (d: Buffer) => { if (err.length < 2000) err += d.toString() })
    c.once('error', reject)
    c.once('close', code => { code === expect ? resolve() : reject(new Error(`${argv.slice(1).join(' ')} exited ${code ?? '?'}: ${err.trim()}`)) })
  })
  return performance.now() - t0
}

export const scenario: Scenario = {
  name: 'cli-latency',
  description: 'client commands (--version, status, ps, kv get, logs, token) against a one-node agent, median vs node -e 0',
  async run ({ quick }) {
    const runs = quick ? QUICK_RUNS : RUNS
    const cluster = await Cluster.create()
    try {
      const a = await cluster.add('a0')
      await a.start(['init'], 120_000)
      const put = await a.cli(['kv', 'put', 'bench-key', 'bench-value'])
      if (put.code !== 0) throw new Error(`kv put failed: ${put.stderr}`)
      // A capsule with output for `logs`, from the image every agent builds locally.
      const run = await a.cli(['run', 'bolt.local/busybox:demo', '--name', 'logsrc', '--memory', '16M', '--', '/bin/sh', '-c', 'echo hello; sleep 3600'])
      const running = run.code === 0 && await waitFor(async () => (await a.cli(['ps'])).stdout.includes('running'), 60_000, 300) >= 0
      const bin = join(repoRoot(), 'bin', 'bolt-agent.js')
      const cli = (...args: string[]): string[] => [process.execPath, bin, '--data', a.dataDir, ...args]
      const commands: Array<{ name: string, argv: string[], exit: number }> = [
        { name: 'version', argv: [process.execPath, bin, '--version'], exit: 0 },
        { name: 'status', argv: cli('status', '--json'), exit: 0 },
        { name: 'ps', argv: cli('ps', '--json'), exit: 0 },
        { name: 'kvGet', argv: cli('kv', 'get', 'bench-key'), exit: 0 },
        // Without a runtime there is no capsule: logs of a missing one still runs the whole client path.
        { name: 'logs', argv: running ? cli('logs', 'logsrc') : cli('logs', 'no-such-capsule'), exit: running ? 0 : 1 },
        { name: 'token', argv: cli('token', '--json'), exit: 0 }
      ]
      const baseline: number[] = []
      const samples = new Map(commands.map(c => [c.name, [] as number[]]))
      const load0 = loadavg()[0] ?? 0
      // One warm-up of each (the disk cache, Node's compile cache), then interleaved rounds so drift on a shared machine hits all alike.
      for (const c of commands) await timeOne(c.argv, c.exit)
      for (let i = 0; i < runs; i++) {
        baseline.push(await timeOne([process.execPath, '-e', '0']))
        for (const c of commands) samples.get(c.name)!.push(await timeOne(c.argv, c.exit))
      }
      const nodeMs = percentile(baseline, 50)
      const figures: Record<string, number> = { runs, nodeE0MedianMs: nodeMs }
      let worst = 0
      for (const c of commands) {
        const med = percentile(samples.get(c.name)!, 50)
        figures[`${c.name}MedianMs`] = med
        figures[`${c.name}Ratio`] = med / nodeMs
        worst = Math.max(worst, med / nodeMs)
      }
      figures.worstRatio = worst
      return {
        name: 'cli-latency',
        figures,
        goal: `every <command>Ratio <= ${GOAL_RATIO}`,
        met: worst <= GOAL_RATIO,
        config: {
          agent: 'one node (init) on loopback',
          measured: 'spawn of `node bin/bolt-agent.js ...` to exit, median of the runs; node -e 0 interleaved',
          logs: running ? 'logs of a running capsule (busybox)' : 'logs of a missing capsule (no runtime here)',
          loadAvg1mAtStart: load0,
          loadAvg1mAtEnd: loadavg()[0] ?? 0,
          cpus: availableParallelism()
        }
      }
    } finally {
      await cluster.destroy()
    }
  }
}
