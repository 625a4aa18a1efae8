// run-vs-containerd: `bolt-agent run` typed as a user types it, until the
// capsule is running, against containerd's `ctr run -d` with runc for the
// same cached busybox image, in the same run (Debian's containerd, started
// here with a private root, state and socket). On a one-node cluster, then
// on three nodes with the CLI talking to a follower. The report splits
// bolt-agent's time into steps, from marks the CLI (BOLT_TIMINGS) and the
// node that runs the capsule (inspect's startTrace) record: see STEPS.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, waitFor, type AgentProcess } from '../test/helpers/harness.js'
import { percentile, repoRoot, type Scenario } from './report.js'
import { RAFT_TOML, agreedLeader, apiOf, formVoters, kv } from './_raft.js'
import { buildImage, pushImage, startRegistry } from '../test/helpers/registry.js'

const CONTAINERD = '/usr/bin/containerd'
const CTR = '/usr/bin/ctr'
const ARGS = ['/bin/sh', '-c', 'sleep 600']
/** What a user types: the launcher, which turns on Node's compile cache. */
const BIN = (): string => join(repoRoot(), 'bin', 'bolt-agent.js')

interface Timed { ms: number, code: number | null, out: string }

async function timed (cmd: string, args: string[], env?: Record<string, string>): Promise<Timed> {
  const t0 = performance.now()
  return await new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(env !== undefined ? { env: { ...process.env, ...env } } : {}) })
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

interface BoltRun { totalMs: number, submitMs: number, steps: Record<string, number> }

/** The breakdown's steps: each the time from the previous mark to this one (epoch ms, all on this machine). */
const STEPS: Array<[string, string, string]> = [
  ['nodeStart', 'spawn', 'start'], // exec until Node's own clock starts
  ['cliLoad', 'start', 'sent'], // the CLI's modules, argument parsing, api.json
  ['apiCommit', 'sent', 'committed'], // HTTP, zod, Raft commit and apply of capsule.create on the running node
  ['scheduling', 'committed', 'placed'], // the leader's round and the capsule.place commit, applied on the running node
  ['supervisor', 'placed', 'supervisor'], // the apply until the supervisor's task begins
  ['imagePrepare', 'supervisor', 'imageReady'], // tag resolved again, prepared image found
  ['bundle', 'imageReady', 'bundleReady'], // rootfs mount, FIFOs, cgroup, config.json
  ['launch', 'bundleReady', 'launched'], // log readers attached, the waiter let go
  ['runtime', 'launched', 'started'], // `runc run` until the capsule's pid file (runc create + start)
  ['reportRunning', 'started', 'running'], // capsule.report running committed and applied
  ['cliSeesPlaced', 'placed', 'answered'], // the submit's answer (pushed by the placement's apply) reaches the CLI
  ['cliExit', 'answered', 'exit'], // the CLI prints and ends (overlaps the start)
  ['seenRunning', 'running', 'seen'] // this scenario's 5 ms poll of GET /v1/capsules sees it
]

/** The CLI's `run` as a user types it, then GET /v1/capsules every 5 ms until it shows the capsule running; the step marks from the CLI (BOLT_TIMINGS) and the running node (inspect's startTrace). */
async function boltRuns (via: AgentProcess, agents: AgentProcess[], image: string, prefix: string, runs: number): Promise<BoltRun[]> {
  const api = await apiOf(via)
  const apis = await Promise.all(agents.map(apiOf))
  const work = await mkdtemp(join(tmpdir(), 'bolt-run-timings-'))
  const out: BoltRun[] = []
  try {
    for (let i = -1; i < runs; i++) {
      const name = `${prefix}${i < 0 ? 'warm' : i}`
      const file = join(work, `${name}.json`)
      const t0 = performance.now()
      const spawnAt = performance.timeOrigin + t0
      const r = await timed(process.execPath, [BIN(), '--data', via.dataDir, 'run', image, '--network', 'none', '--name', name, '--memory', '16M', '--cpu', '0.01', '--', ...ARGS], { BOLT_TIMINGS: file })
      if (r.code !== 0) throw new Error(`bolt-agent run failed: ${r.out}`)
      const ok = await waitFor(async () => {
        const rows = (await kv(api, 'GET', '/v1/capsules')).body as unknown as Array<{ name: string, state: string }>
        return rows.find(x => x.name === name || x.name === `${name}-0`)?.state === 'running'
      }, 60_000, 5)
      const seen = performance.timeOrigin + performance.now()
      if (ok < 0) throw new Error(`${name} not running within 60 s`)
      if (i < 0) continue
      const marks: Record<string, number> = { spawn: spawnAt, seen, ...JSON.parse(await readFile(file, 'utf8')) as Record<string, number> }
      for (const a of apis) {
        const inspect = (await kv(a, 'GET', `/v1/capsules/${name}`)).body as { instances?: Array<{ startTrace?: Record<string, number> }> }
        Object.assign(marks, inspect.instances?.[0]?.startTrace ?? {})
      }
      const steps: Record<string, number> = {}
      for (const [step, from, to] of STEPS) if (marks[from] !== undefined && marks[to] !== undefined) steps[step] = marks[to] - marks[from]
      out.push({ totalMs: seen - spawnAt, submitMs: r.ms, steps })
    }
  } finally {
    await rm(work, { recursive: true, force: true })
  }
  return out
}

/** The p50 of each step over these runs, as figures named `prefix` + step. */
function stepP50s (runs: BoltRun[], prefix: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [step] of STEPS) {
    const v = runs.map(r => r.steps[step]).filter((x): x is number => x !== undefined)
    if (v.length > 0) out[prefix + step] = Math.round(percentile(v, 50) * 10) / 10
  }
  return out
}

async function cliStartMs (via: AgentProcess, runs: number): Promise<number> {
  const ms: number[] = []
  for (let i = 0; i < runs; i++) ms.push((await timed(process.execPath, [BIN(), '--data', via.dataDir, '--version'])).ms)
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
        single = await boltRuns(a!, [a!], image, 'one', runs)
      } finally {
        await one.destroy()
      }
      const three = await Cluster.create(RAFT_TOML(3))
      let multi: BoltRun[] = []
      // On a loaded machine the 3-node cluster may not form in time: the one-node figures still stand.
      let threeError: string | null = null
      try {
        const agents = await formVoters(three, 3)
        const lead = await agreedLeader(agents, 30_000)
        const follower = agents.find(a => a.id !== lead?.leader) ?? agents[0]!
        multi = await boltRuns(follower, agents, image, 'three', runs)
      } catch (err) {
        threeError = (err as Error).message.slice(0, 200)
      } finally {
        await three.destroy()
      }
      const ctrP50 = percentile(ctr, 50)
      const p50 = percentile(single.map(r => r.totalMs), 50)
      const p50Three = multi.length > 0 ? percentile(multi.map(r => r.totalMs), 50) : NaN
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
          boltRunThreeP50Ms: Number.isNaN(p50Three) ? null : p50Three,
          threeNodeError: threeError,
          cliStartP50Ms: cliMs,
          submitP50Ms: submitP50,
          submitToRunningP50Ms: p50 - submitP50,
          oneNodeRatio: oneRatio,
          threeNodeRatio: Number.isNaN(threeRatio) ? null : threeRatio,
          ...stepP50s(single, 'oneStepP50Ms.'),
          ...stepP50s(multi, 'threeStepP50Ms.')
        },
        goal: 'oneNodeRatio <= 1 and threeNodeRatio <= 1.5 (against ctr run -d with runc, same image, same run)',
        met: oneRatio <= 1 && threeRatio <= 1.5,
        config: {
          bolt: '`node bin/bolt-agent.js --data D run IMAGE --name N -- sh -c "sleep 600"` (CLI process) until GET /v1/capsules shows it running (5 ms polls); three nodes: the CLI talks to a follower',
          containerd: 'Debian containerd 1.6 with runc, own root/state/socket, CRI off; `ctr run -d` wall time (it returns once the task is started)',
          breakdown: 'cliStartP50Ms: `bolt-agent --version`; submitP50Ms: the `run` process until it exits (it returns once placed); *StepP50Ms.STEP: each step from the previous mark (CLI: BOLT_TIMINGS; running node: inspect startTrace); the steps: ' + STEPS.map(([s, f, t]) => `${s}=${f}→${t}`).join(', ')
        }
      }
    } finally {
      await registry.stop()
    }
  }
}
