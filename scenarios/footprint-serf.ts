// footprint-serf: an 8-member cluster of bolt-agents and one of HashiCorp
// Serf agents (Debian's `serf`, its default LAN timing), started the same way
// in the same run. Figures: idle RSS and PSS of a joined member (median of
// the joiners; PSS counts shared pages fairly), time from process start to
// `alive` in the cluster, and the time until every other member marks a
// kill -9'd member dead, as a ratio to Serf's.
// Goals (issue #22): RSS <= 80 MB (lan), start to alive <= 1 s, failure
// detection <= 1.1 x Serf's.
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { promisify } from 'node:util'
import { Cluster, waitFor, type AgentProcess } from '../test/helpers/harness.js'
import type { Scenario } from './report.js'
import { aliveCount } from './_membership.js'
import { apiOf } from './_raft.js'

const run = promisify(execFile)
const N = 8

/** RSS and PSS of a process, in MB (smaps_rollup gives both in one read). */
export async function memoryOf (pid: number): Promise<{ rssMB: number, pssMB: number }> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8')
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN)
  return { rssMB: kb('Rss') / 1024, pssMB: kb('Pss') / 1024 }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? Number.NaN : s[Math.floor(s.length / 2)]!
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number }
      srv.close(() => { resolve(port) })
    })
    srv.on('error', reject)
  })
}

interface SerfMember { name: string, status: string }

class SerfAgent {
  proc: ChildProcess | undefined
  constructor (readonly name: string, readonly bind: number, readonly rpc: number) {}

  start (join?: number): void {
    const args = ['agent', `-node=${this.name}`, `-bind=127.0.0.1:${this.bind}`, `-rpc-addr=127.0.0.1:${this.rpc}`, '-log-level=err']
    if (join !== undefined) args.push(`-join=127.0.0.1:${join}`)
    this.proc = spawn('serf', args, { stdio: 'ignore' })
  }

  async members (): Promise<SerfMember[]> {
    try {
      const { stdout } = await run('serf', ['members', `-rpc-addr=127.0.0.1:${this.rpc}`, '-format=json'], { timeout: 5000 })
      return (JSON.parse(stdout) as { members: SerfMember[] }).members
    } catch {
      return [] // not answering yet (starting) or gone: no members seen
    }
  }

  stop (): void { this.proc?.kill('SIGKILL') }
}

async function serfFigures (): Promise<{ rssMB: number, pssMB: number, startToAliveS: number, detectS: number }> {
  const agents: SerfAgent[] = []
  try {
    for (let i = 0; i < N; i++) agents.push(new SerfAgent(`s${i}`, await freePort(), await freePort()))
    const [first, ...rest] = agents
    first!.start()
    await waitFor(async () => (await first!.members()).length === 1, 30_000, 50)
    const alive = async (): Promise<number> => (await first!.members()).filter(m => m.status === 'alive').length
    for (const a of rest.slice(0, -1)) a.start(first!.bind)
    await waitFor(async () => await alive() === N - 1, 60_000, 100)
    // The timed joiner, like the bolt one: process start until the seed sees it alive.
    const last = rest.at(-1)!
    const t0 = Date.now()
    last.start(first!.bind)
    await waitFor(async () => (await first!.members()).some(m => m.name === last.name && m.status === 'alive'), 30_000, 20)
    const startToAliveS = (Date.now() - t0) / 1000
    await new Promise(resolve => setTimeout(resolve, 10_000))
    const mems = await Promise.all(rest.map(async a => await memoryOf(a.proc!.pid!)))
    const killedAt = Date.now()
    last.stop()
    const others = agents.slice(0, -1)
    await waitFor(async () => (await Promise.all(others.map(async a => (await a.members()).find(m => m.name === last.name)?.status))).every(s => s === 'failed'), 120_000, 100)
    const detectS = (Date.now() - killedAt) / 1000
    return { rssMB: median(mems.map(m => m.rssMB)), pssMB: median(mems.map(m => m.pssMB)), startToAliveS, detectS }
  } finally {
    for (const a of agents) a.stop()
  }
}

async function boltFigures (quick: boolean): Promise<{ rssMB: number, pssMB: number, startToAliveS: number, detectS: number }> {
  const cluster = await Cluster.create('')
  try {
    const first = await cluster.add('a0')
    // Untimed: a loaded machine may take longer than the harness's 30 s default.
    await first.start(['init'], 120_000)
    const seed = first.ready!.node.addrs.find(a => a.includes('/quic-v1'))!
    const env = { BOLT_TOKEN: first.ready!.token }
    const joiners: AgentProcess[] = []
    for (let i = 1; i < N - 1; i++) {
      const a = await cluster.add(`a${i}`)
      await a.start(['join', seed], 120_000, env)
      joiners.push(a)
    }
    await waitFor(async () => await aliveCount(first) === N - 1, 60_000, 200)
    const last = await cluster.add(`a${N - 1}`)
    // Timed like Serf's joiner: from its process start until the seed sees it
    // alive, which may come before the joiner says it is ready (the parts
    // after membership start after the join).
    const t0 = Date.now()
    const ready = last.start(['join', seed], 60_000, env)
    await waitFor(async () => await stateOf(first, { name: last.name }) === 'alive', 30_000, 20)
    const startToAliveS = (Date.now() - t0) / 1000
    await ready
    joiners.push(last)
    await new Promise(resolve => setTimeout(resolve, quick ? 10_000 : 60_000))
    const mems = await Promise.all(joiners.map(async a => await memoryOf(a.proc!.pid!)))
    const others = [first, ...joiners.slice(0, -1)]
    const killedAt = Date.now()
    await last.kill9()
    await waitFor(async () => (await Promise.all(others.map(async a => await stateOf(a, { id: last.id })))).every(s => s === 'dead'), 120_000, 100)
    const detectS = (Date.now() - killedAt) / 1000
    return { rssMB: median(mems.map(m => m.rssMB)), pssMB: median(mems.map(m => m.pssMB)), startToAliveS, detectS }
  } finally {
    await cluster.destroy()
  }
}

/**
 * A member's state as one agent sees it, read from that agent's API over
 * HTTP: a `bolt-agent status` process per poll cost a Node start (a second
 * or more of a loaded machine's time, against `serf members`' few ms) and
 * made bolt's figures slower than the agents were.
 */
async function stateOf (a: AgentProcess, who: { id?: string, name?: string }): Promise<string | undefined> {
  try {
    const api = await apiOf(a)
    const res = await fetch(`${api.url}/v1/status`, { headers: { authorization: `Bearer ${api.token}` }, signal: AbortSignal.timeout(5000) })
    if (!res.ok) return undefined
    return ((await res.json()) as { members: Array<{ id: string, name: string, state: string }> }).members.find(m => m.id === who.id || m.name === who.name)?.state
  } catch {
    return undefined // not answering (busy or gone): no state seen this poll
  }
}

async function hasSerf (): Promise<boolean> {
  try { await run('serf', ['version']); return true } catch { return false }
}

export const scenario: Scenario = {
  name: 'footprint-serf',
  description: `${N} bolt-agents against ${N} Serf agents: idle RSS/PSS of a joined member, start to alive, kill -9 detection`,
  async run ({ quick }) {
    if (!await hasSerf()) throw new Error('serf is not installed (apt-get install serf): this scenario measures against it')
    const serf = await serfFigures()
    const bolt = await boltFigures(quick)
    const detectRatio = bolt.detectS / serf.detectS
    return {
      name: 'footprint-serf',
      figures: {
        boltRssMB: bolt.rssMB,
        boltPssMB: bolt.pssMB,
        serfRssMB: serf.rssMB,
        serfPssMB: serf.pssMB,
        rssRatioToSerf: bolt.rssMB / serf.rssMB,
        boltStartToAliveS: bolt.startToAliveS,
        serfStartToAliveS: serf.startToAliveS,
        boltDetectS: bolt.detectS,
        serfDetectS: serf.detectS,
        detectRatioToSerf: detectRatio
      },
      goal: 'boltRssMB <= 80 and boltStartToAliveS <= 1 and detectRatioToSerf <= 1.1',
      met: bolt.rssMB <= 80 && bolt.startToAliveS <= 1 && detectRatio <= 1.1,
      config: { members: N, idleSeconds: quick ? 10 : 60, profile: 'lan', serf: 'default LAN timing' }
    }
  }
}
