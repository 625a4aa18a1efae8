// run-vs-containerd: `bolt-agent run` typed as a user types it, until the
// capsule is running, against containerd's `ctr run -d` with runc for the
// same cached busybox image, in the same run (Debian's containerd, started
// here with a private root, state and socket). On a one-node cluster, then
// on three nodes with the CLI talking to a follower. The report splits
// bolt-agent's time into the CLI's own start, the submit (CLI exit) and
// the rest until the API shows the capsule running.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI, Cluster, waitFor, type AgentProcess } from '../test/helpers/harness.js'
import { percentile, type Scenario } from './report.js'
import { RAFT_TOML, agreedLeader, apiOf, formVoters, kv } from './_raft.js'
import { buildImage, pushImage, startRegistry } from '../test/helpers/registry.js'

const CONTAINERD = '/usr/bin/containerd'
const CTR = '/usr/bin/ctr'
const ARGS = ['/bin/sh', '-c', 'sleep 600']

interface Timed { ms: number, code: number | null, out: string }

async function timed (cmd: string, args: string[]): Promise<Timed> {
  const t0 = performance.now()
  return await new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    p.stdout.on('data', (d: Buffer) => { out += d.toString() })
    p.stderr.on('data', (d: Buffer) => { out += d.toString() })
    p.once('error', reject)
    p.once('exit', code => { resolve({ ms: performance.now() - t0, code, out }) })
  })
}

interface Containerd { ctr: (args: string[]) => Promise<Timed>, stop: () => Promise<void> }

async function startContainerd (): Promise<Containerd> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-containerd-'))
  const sock = join(dir, 'containerd.sock')
  const config = join(dir, 'config.toml')
  await writeFile(config, `version = 2\nroot = "${join(dir, 'root')}"\nstate = "${join(dir, 'state')}"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${sock}"\n`)
  const proc: ChildProcess = spawn(CONTAINERD, ['--config', config, '--log-level', 'error'], { stdio: 'ignore' })
  const ctr = async (args: string[]): Promise<Timed> => await timed(CTR, ['--address', sock, '--namespace', 'bench', ...args])
  const stop = async (): Promise<void> => {
    const ids = (await ctr(['tasks', 'ls', '-q'])).out.split('\n').filter(Boolean)
    for (const id of ids) await ctr(['tasks', 'kill', '-s', 'SIGKILL', id])
    await waitFor(async () => (await ctr(['tasks', 'ls', '-q'])).out.trim() === '', 10_000, 100)
    for (const id of (await ctr(['containers', 'ls', '-q'])).out.split('\n').filter(Boolean)) {
      await ctr(['tasks', 'rm', '-f', id])
      await ctr(['containers', 'rm', id])
    }
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise(resolve => proc.once('exit', resolve))
      proc.kill('SIGTERM')
      await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 5000))])
      proc.kill('SIGKILL')
    }
    await timed('umount', ['-R', dir]).catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
  }
  const up = await waitFor(async () => (await ctr(['version'])).code === 0, 20_000, 100)
  if (up < 0) { await stop(); throw new Error('containerd did not start within 20 s') }
  return { ctr, stop }
}

async function ctrRuns (c: Containerd, image: string, runs: number): Promise<number[]> {
  const pulled = await c.ctr(['images', 'pull', '--plain-http', image])
  if (pulled.code !== 0) throw new Error(`ctr images pull failed: ${pulled.out}`)
  // One run first, as for bolt-agent: the image is unpacked into a snapshot then.
  await c.ctr(['run', '-d', image, 'warm', ...ARGS])
  const out: number[] = []
  for (let i = 0; i < runs; i++) {
    const r = await c.ctr(['run', '-d', image, `r${i}`, ...ARGS])
    if (r.code !== 0) throw new Error(`ctr run failed: ${r.out}`)
    out.push(r.ms)
  }
  return out
}

interface BoltRun { totalMs: number, submitMs: number }

/** The CLI's `run` as a user types it, then GET /v1/capsules every 5 ms until it shows the capsule running. */
async function boltRuns (via: AgentProcess, apiAgent: AgentProcess, image: string, prefix: string, runs: number): Promise<BoltRun[]> {
  const api = await apiOf(apiAgent)
  const out: BoltRun[] = []
  for (let i = -1; i < runs; i++) {
    const name = `${prefix}${i < 0 ? 'warm' : i}`
    const t0 = performance.now()
    const r = await timed(process.execPath, [CLI, '--data', via.dataDir, 'run', image, '--network', 'none', '--name', name, '--memory', '16M', '--cpu', '0.01', '--', ...ARGS])
    if (r.code !== 0) throw new Error(`bolt-agent run failed: ${r.out}`)
    const ok = await waitFor(async () => {
      const rows = (await kv(api, 'GET', '/v1/capsules')).body as unknown as Array<{ name: string, state: string }>
      return rows.find(x => x.name === name || x.name === `${name}-0`)?.state === 'running'
    }, 60_000, 5)
    if (ok < 0) throw new Error(`${name} not running within 60 s`)
    if (i >= 0) out.push({ totalMs: performance.now() - t0, submitMs: r.ms })
  }
  return out
}

async function cliStartMs (via: AgentProcess, runs: number): Promise<number> {
  const ms: number[] = []
  for (let i = 0; i < runs; i++) ms.push((await timed(process.execPath, [CLI, '--data', via.dataDir, '--version'])).ms)
  return percentile(ms, 50)
}

export const scenario: Scenario = {
  name: 'run-vs-containerd',
  description: '`bolt-agent run` until running vs containerd `ctr run -d` (runc), cached busybox, 1 and 3 nodes',
  async run ({ quick }) {
    if (!existsSync(CONTAINERD) || !existsSync(CTR)) throw new Error(`run-vs-containerd needs containerd and ctr (${CONTAINERD}): apt-get install containerd`)
    const runs = quick ? 5 : 20
    const registry = await startRegistry()
    try {
      const img = await buildImage()
      await pushImage(registry.url, 'bench/busybox', '1', img)
      const image = `${registry.host}/bench/busybox:1`
      const containerd = await startContainerd()
      let ctr: number[]
      try {
        ctr = await ctrRuns(containerd, image, runs)
      } finally {
        await containerd.stop()
      }
      const one = await Cluster.create(RAFT_TOML(1))
      let single: BoltRun[]
      let cliMs: number
      try {
        const [a] = await formVoters(one, 1)
        await agreedLeader([a!], 30_000)
        cliMs = await cliStartMs(a!, runs)
        single = await boltRuns(a!, a!, image, 'one', runs)
      } finally {
        await one.destroy()
      }
      const three = await Cluster.create(RAFT_TOML(3))
      let multi: BoltRun[]
      try {
        const agents = await formVoters(three, 3)
        const lead = await agreedLeader(agents, 30_000)
        const follower = agents.find(a => a.id !== lead?.leader) ?? agents[0]!
        multi = await boltRuns(follower, follower, image, 'three', runs)
      } finally {
        await three.destroy()
      }
      const ctrP50 = percentile(ctr, 50)
      const p50 = percentile(single.map(r => r.totalMs), 50)
      const p50Three = percentile(multi.map(r => r.totalMs), 50)
      const submitP50 = percentile(single.map(r => r.submitMs), 50)
      const oneRatio = p50 / ctrP50
      const threeRatio = p50Three / ctrP50
      return {
        name: 'run-vs-containerd',
        figures: {
          runs,
          ctrRunP50Ms: ctrP50,
          boltRunP50Ms: p50,
          boltRunP95Ms: percentile(single.map(r => r.totalMs), 95),
          boltRunThreeP50Ms: p50Three,
          cliStartP50Ms: cliMs,
          submitP50Ms: submitP50,
          submitToRunningP50Ms: p50 - submitP50,
          oneNodeRatio: oneRatio,
          threeNodeRatio: threeRatio
        },
        goal: 'oneNodeRatio <= 1 and threeNodeRatio <= 1.5 (against ctr run -d with runc, same image, same run)',
        met: oneRatio <= 1 && threeRatio <= 1.5,
        config: {
          bolt: '`bolt-agent --data D run IMAGE --name N -- sh -c "sleep 600"` (CLI process) until GET /v1/capsules shows it running (5 ms polls); three nodes: the CLI talks to a follower',
          containerd: 'Debian containerd 1.6 with runc, own root/state/socket, CRI off; `ctr run -d` wall time (it returns once the task is started)',
          breakdown: 'cliStartP50Ms: `bolt-agent --version`; submitP50Ms: the `run` process until it exits (CLI start + API + Raft commit); submitToRunningP50Ms: scheduling, the supervisor, bundle and runtime'
        }
      }
    } finally {
      await registry.stop()
    }
  }
}
