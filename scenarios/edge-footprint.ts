// edge-footprint: one idle agent with profile = "edge" in a 16-agent cluster
// (8 with --quick) on loopback: its RSS after 10 minutes idle (1 minute with
// --quick), goal ≤ 64 MB, and its membership (SWIM) traffic in and out over
// the idle window, goal ≤ 2 KB/s. The other agents run the default profile.
// The edge agent runs as shipped: it re-executes itself with the edge runtime
// limits (agent/edge-runtime.ts, `edge.tune_runtime`); the report says so,
// and splits RSS into the V8 heap, memory outside it, and file-backed pages
// shared with every other node process (the node binary's code).
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Cluster, waitFor, type AgentProcess } from '../test/helpers/harness.js'
import { formInBatches, rssBytes } from './_membership.js'
import type { Scenario, ScenarioReport } from './report.js'
import { EDGE_ENV } from '../agent/edge-runtime.js'

const SWIM = '/bolt/swim/1'
const RSS_GOAL_MB = 64
const TRAFFIC_GOAL_BPS = 2048

async function metricsText (a: AgentProcess): Promise<string> {
  const api = JSON.parse(await readFile(join(a.dataDir, 'api.json'), 'utf8')) as { url: string, token: string }
  const res = await fetch(`${api.url}/metrics`, { headers: { authorization: `Bearer ${api.token}` }, signal: AbortSignal.timeout(10_000) })
  return await res.text()
}

/** SWIM bytes in + out from the agent's /metrics. */
async function swimBytes (a: AgentProcess): Promise<number> {
  let sum = 0
  for (const line of (await metricsText(a)).split('\n')) {
    if (!line.startsWith('bolt_protocol_bytes_total{') || !line.includes(`protocol="${SWIM}"`)) continue
    sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return sum
}

/** One unlabelled gauge from /metrics text, NaN when absent. */
function gauge (text: string, name: string): number {
  const line = text.split('\n').find(l => l.startsWith(`${name} `))
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1))
}

/** Shared_Clean and Private_Dirty of a process, in bytes (/proc/PID/smaps_rollup). */
async function residentSplit (pid: number): Promise<{ sharedClean: number, privateDirty: number }> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8')
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN) * 1024
  return { sharedClean: kb('Shared_Clean'), privateDirty: kb('Private_Dirty') }
}

async function cmdline (pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(a => a.startsWith('--max') || a.startsWith('--optimize')).join(' ')
}

export const scenario: Scenario = {
  name: 'edge-footprint',
  description: 'RSS and membership traffic of an idle edge-profile agent in a 16-agent cluster',
  run: async ({ quick }): Promise<ScenarioReport> => {
    const n = quick ? 8 : 16
    const idleMs = (quick ? 60 : 600) * 1000
    const cluster = await Cluster.create('')
    try {
      const others = await formInBatches(cluster, n - 1)
      const seed = others[0]!.ready!.node.addrs.find(a => a.includes('/quic-v1'))!
      const edge = await cluster.add('edge', 'profile = "edge"\n')
      await edge.start(['join', seed, '--token', others[0]!.ready!.token], 60_000)
      const joined = await waitFor(async () => (await edge.status())?.members.filter(m => m.state === 'alive').length === n, 120_000, 1000)
      if (joined < 0) throw new Error(`the edge agent never saw all ${n} members alive`)
      // Let the join's burst (push-pull of the whole member list) pass before measuring.
      await new Promise(resolve => setTimeout(resolve, 10_000))
      const b0 = await swimBytes(edge)
      const t0 = Date.now()
      await new Promise(resolve => setTimeout(resolve, idleMs))
      const b1 = await swimBytes(edge)
      const seconds = (Date.now() - t0) / 1000
      const pid = edge.proc!.pid!
      const rssMB = (await rssBytes(pid)) / 1024 / 1024
      const split = await residentSplit(pid)
      const m = await metricsText(edge)
      const MB = 1024 * 1024
      const bps = (b1 - b0) / seconds
      const alive = (await edge.status())?.members.filter(m => m.state === 'alive').length ?? -1
      return {
        name: 'edge-footprint',
        figures: {
          idleRssMB: rssMB,
          membershipBytesPerSec: bps,
          rssRatioToGoal: rssMB / RSS_GOAL_MB,
          trafficRatioToGoal: bps / TRAFFIC_GOAL_BPS,
          membersAliveAtEnd: alive,
          heapUsedMB: gauge(m, 'bolt_process_nodejs_heap_size_used_bytes') / MB,
          heapTotalMB: gauge(m, 'bolt_process_nodejs_heap_size_total_bytes') / MB,
          externalMB: gauge(m, 'bolt_process_nodejs_external_memory_bytes') / MB,
          privateDirtyMB: split.privateDirty / MB,
          sharedCleanMB: split.sharedClean / MB
        },
        goal: `idleRssMB <= ${RSS_GOAL_MB} and membershipBytesPerSec <= ${TRAFFIC_GOAL_BPS}`,
        met: rssMB <= RSS_GOAL_MB && bps <= TRAFFIC_GOAL_BPS,
        config: {
          agents: n,
          idleSeconds: idleMs / 1000,
          profile: 'edge for the measured agent, lan for the rest',
          edgeRuntime: `${await cmdline(pid)} ${Object.entries(EDGE_ENV).map(([k, v]) => `${k}=${v}`).join(' ')} (edge.tune_runtime, re-exec in place)`,
          rss: 'VmRSS; sharedCleanMB is file-backed pages (mostly the node binary) shared with other node processes',
          traffic: 'SWIM bytes in + out at the edge agent',
          quick
        }
      }
    } finally {
      await cluster.destroy()
    }
  }
}
