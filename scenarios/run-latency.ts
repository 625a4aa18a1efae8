// run-latency: submit a capsule through the API of a 3-agent cluster with the
// image already cached on every node, until `ps` shows it running; figure:
// p50 as a ratio to bare `runc run` of a busybox bundle in the same run.
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, symlink, copyFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, waitFor } from '../test/helpers/harness.js'
import { percentile, type Scenario } from './report.js'
import { RAFT_TOML, agreedLeader, apiOf, formVoters, kv } from './_raft.js'
import { buildImage, pushImage, startRegistry } from '../test/helpers/registry.js'

async function bareRunc (runs: number): Promise<number[]> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-bare-'))
  try {
    await mkdir(join(dir, 'rootfs', 'bin'), { recursive: true })
    await copyFile('/bin/busybox', join(dir, 'rootfs', 'bin', 'busybox'))
    await symlink('busybox', join(dir, 'rootfs', 'bin', 'true'))
    await exec('runc', ['spec', '--bundle', dir])
    const spec = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { process: { args: string[], terminal: boolean } }
    spec.process.args = ['/bin/true']
    spec.process.terminal = false
    await writeFile(join(dir, 'config.json'), JSON.stringify(spec))
    const out: number[] = []
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now()
      await exec('runc', ['--root', join(dir, 'state'), 'run', '--bundle', dir, `bare-${process.pid}-${i}`])
      out.push(performance.now() - t0)
    }
    return out
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

async function exec (cmd: string, args: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: 'ignore' })
    c.once('error', reject)
    c.once('exit', code => { code === 0 ? resolve() : reject(new Error(`${cmd} ${args[0] ?? ''} exited ${code ?? '?'}`)) })
  })
}

export const scenario: Scenario = {
  name: 'run-latency',
  description: 'API run -> running on a 3-agent cluster with a cached image, vs bare runc run',
  async run ({ quick }) {
    const runs = quick ? 5 : 20
    const registry = await startRegistry()
    const cluster = await Cluster.create(RAFT_TOML(3))
    try {
      const img = await buildImage()
      await pushImage(registry.url, 'bench/busybox', '1', img)
      const image = `${registry.host}/bench/busybox:1`
      const agents = await formVoters(cluster, 3)
      const lead = await agreedLeader(agents, 30_000)
      const api = await apiOf(agents.find(a => a.id === lead?.leader) ?? agents[0]!)
      // Warm every node's image cache.
      await kv(api, 'POST', '/v1/capsules', { name: 'warm', image, args: ['/bin/true'], replicas: 3, strategy: 'spread', resources: { cpu: 0.01, memoryBytes: 16 * 1024 * 1024 }, network: 'none' }, 30_000)
      await waitFor(async () => {
        const rows = (await kv(api, 'GET', '/v1/capsules')).body as unknown as Array<{ name: string, state: string }>
        return rows.filter(r => r.name.startsWith('warm-') && (r.state === 'exited' || r.state === 'failed')).length === 3
      }, 120_000, 200)
      const samples: number[] = []
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now()
        await kv(api, 'POST', '/v1/capsules', { name: `rl-${i}`, image, args: ['/bin/sh', '-c', 'sleep 600'], resources: { cpu: 0.01, memoryBytes: 16 * 1024 * 1024 }, network: 'none' }, 30_000)
        const ok = await waitFor(async () => {
          const rows = (await kv(api, 'GET', '/v1/capsules')).body as unknown as Array<{ name: string, state: string }>
          return rows.find(r => r.name === `rl-${i}`)?.state === 'running'
        }, 60_000, 10)
        if (ok >= 0) samples.push(performance.now() - t0)
        await kv(api, 'DELETE', `/v1/capsules/rl-${i}`)
      }
      const bare = await bareRunc(runs)
      const p50 = percentile(samples, 50)
      const bareP50 = percentile(bare, 50)
      return {
        name: 'run-latency',
        figures: { runs, p50Ms: p50, p95Ms: percentile(samples, 95), bareRuncP50Ms: bareP50, p50Ratio: p50 / bareP50 },
        goal: 'p50Ratio reported (no fixed goal in the issue)',
        met: null,
        config: { cluster: '3 voters on loopback', measured: 'POST /v1/capsules until GET /v1/capsules shows running (10 ms polls)', bare: 'runc run /bin/true' }
      }
    } finally {
      await cluster.destroy()
      await registry.stop()
    }
  }
}
