// raft-vs-etcd: writes and linearizable reads of 256-byte values on a
// 3-member cluster, bolt-agent against etcd 3.4 (Debian's etcd-server, its
// default 100 ms heartbeat and 1000 ms election timeout) started by this
// scenario, both driven by the same `wrk` client with a Lua script over
// HTTP+JSON: our `PUT|GET /v1/kv/KEY` against etcd's `/v3/kv/put|range`
// gateway. Figures are ratios of bolt-agent's requests/s to etcd's.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster } from '../test/helpers/harness.js'
import type { Scenario } from './report.js'
import { RAFT_TOML, agreedLeader, apiOf, formVoters, kv } from './_raft.js'
import { ETCD, EtcdCluster, b64 } from './_etcd.js'

const VALUE_BYTES = 256
const KEYS = 1000
const WRK = '/usr/bin/wrk'

/** One wrk run's figures (requests/s, latency percentiles in ms, non-2xx answers). */
export interface WrkResult { rps: number, p50Ms: number, p99Ms: number, errors: number, requests: number }

/** wrk's `--latency` block gives "50%  1.23ms"; units us, ms or s. */
function latencyMs (out: string, pct: string): number {
  const m = new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(out)
  if (m === null) return Number.NaN
  const v = Number(m[1])
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v
}

export function parseWrk (out: string): WrkResult {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN)
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? Number.NaN)
  const errors = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0) + Number(/Socket errors:.*timeout (\d+)/.exec(out)?.[1] ?? 0)
  return { rps, requests, errors, p50Ms: latencyMs(out, '50'), p99Ms: latencyMs(out, '99') }
}

async function runWrk (url: string, script: string, connections: number, seconds: number): Promise<WrkResult> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-wrk-'))
  try {
    const file = join(dir, 'script.lua')
    await writeFile(file, script)
    const threads = Math.min(2, connections)
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn(WRK, ['-t', String(threads), '-c', String(connections), '-d', `${seconds}s`, '--timeout', '10s', '--latency', '-s', file, url], { stdio: ['ignore', 'pipe', 'pipe'] })
      let text = ''
      p.stdout.on('data', (d: Buffer) => { text += d.toString() })
      p.stderr.on('data', (d: Buffer) => { text += d.toString() })
      p.once('error', reject)
      p.once('exit', (code) => { code === 0 ? resolve(text) : reject(new Error(`wrk exited ${String(code)}: ${text}`)) })
    })
    return parseWrk(out)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** CPU time (user + system) of a process so far, in ms, from /proc (clock ticks of 10 ms). */
async function cpuMs (pid: number | undefined): Promise<number> {
  if (pid === undefined) return Number.NaN
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name, which is in parentheses and may hold spaces.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) * 10
}

/**
 * A wrk run with the CPU each given process spent meanwhile, per request
 * (ms): on these shared cores CPU per request moves less with the load than
 * requests/s, and it says which process pays.
 */
async function runWrkCpu (url: string, script: string, connections: number, seconds: number, pids: Array<number | undefined>): Promise<WrkResult & { cpuMsPerReq: number[] }> {
  const before = await Promise.all(pids.map(cpuMs))
  const r = await runWrk(url, script, connections, seconds)
  const after = await Promise.all(pids.map(cpuMs))
  return { ...r, cpuMsPerReq: after.map((a, i) => round2((a - before[i]!) / r.requests)) }
}

const round2 = (x: number): number => Math.round(x * 100) / 100
const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length

// Lua for wrk: one request per call, keys spread over KEYS names so writes
// do not all hit one key. `math.random` is seeded per thread by wrk.
const value = 'v'.repeat(VALUE_BYTES)
/** A tiny base64 encoder in Lua (wrk's LuaJIT has none). */
const LUA_B64 = `
local b='ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
function enc(data)
  return ((data:gsub('.', function(x)
    local r,b='',x:byte()
    for i=8,1,-1 do r=r..(b%2^i-b%2^(i-1)>0 and '1' or '0') end
    return r;
  end)..'0000'):gsub('%d%d?%d?%d?%d?%d?', function(x)
    if (#x < 6) then return '' end
    local c=0
    for i=1,6 do c=c+(x:sub(i,i)=='1' and 2^(6-i) or 0) end
    return b:sub(c+1,c+1)
  end)..({ '', '==', '=' })[#data%3+1])
end
`
const ETCD_PUT = LUA_B64 + `
request = function()
  local k = math.random(0, ${KEYS - 1})
  local body = '{"key":"' .. enc("k" .. k) .. '","value":"${b64(value)}"}'
  return wrk.format("POST", "/v3/kv/put", {["Content-Type"]="application/json"}, body)
end
`
const ETCD_RANGE = LUA_B64 + `
request = function()
  local k = math.random(0, ${KEYS - 1})
  return wrk.format("POST", "/v3/kv/range", {["Content-Type"]="application/json"}, '{"key":"' .. enc("k" .. k) .. '"}')
end
`
const boltPut = (token: string): string => `
request = function()
  local k = math.random(0, ${KEYS - 1})
  return wrk.format("PUT", "/v1/kv/k" .. k, {["Content-Type"]="application/json", ["Authorization"]="Bearer ${token}"}, '{"value":"${value}"}')
end
`
const boltGet = (token: string): string => `
request = function()
  local k = math.random(0, ${KEYS - 1})
  return wrk.format("GET", "/v1/kv/k" .. k, {["Authorization"]="Bearer ${token}"})
end
`

/** Three etcd members (_etcd.ts); the load goes to the leader, as for bolt-agent. */
async function startEtcd (): Promise<{ clientUrl: string, stop: () => Promise<void> }> {
  const c = await EtcdCluster.start(3)
  const leader = await c.agreedLeader(10_000)
  return { clientUrl: (leader ?? c.members[0]!).url, stop: async () => { await c.stop() } }
}

export const scenario: Scenario = {
  name: 'raft-vs-etcd',
  description: '3 members: writes at 1 and 64 connections and linearizable reads at 64, bolt-agent vs etcd 3.4, same wrk client',
  async run ({ quick }) {
    if (!existsSync(ETCD)) throw new Error(`raft-vs-etcd needs etcd (${ETCD}): apt-get install etcd-server`)
    if (!existsSync(WRK)) throw new Error(`raft-vs-etcd needs wrk (${WRK}): apt-get install wrk`)
    const seconds = quick ? 5 : 15
    const figures: Record<string, number> = {}
    const etcd = await startEtcd()
    try {
      const e1 = await runWrk(etcd.clientUrl, ETCD_PUT, 1, seconds)
      const e64 = await runWrk(etcd.clientUrl, ETCD_PUT, 64, seconds)
      const er64 = await runWrk(etcd.clientUrl, ETCD_RANGE, 64, seconds)
      Object.assign(figures, { etcdWrites1: e1.rps, etcdWrites64: e64.rps, etcdReads64: er64.rps, etcdWriteP50Ms1: e1.p50Ms, etcdWriteP99Ms64: e64.p99Ms, etcdErrors: e1.errors + e64.errors + er64.errors })
    } finally {
      await etcd.stop()
    }
    const cluster = await Cluster.create(RAFT_TOML(3))
    try {
      const agents = await formVoters(cluster, 3)
      const lead = await agreedLeader(agents, 30_000)
      const leader = agents.find(a => a.id === lead?.leader)
      if (leader === undefined) throw new Error('no leader')
      const api = await apiOf(leader)
      // Every key exists before the reads, so a read measures a read, not a 404.
      for (let k = 0; k < KEYS; k += 50) await Promise.all(Array.from({ length: 50 }, async (_, j) => await kv(api, 'PUT', `/v1/kv/k${k + j}`, { value })))
      // The leader first, then the followers.
      const pids = [leader, ...agents.filter(a => a !== leader)].map(a => a.proc?.pid)
      const b1 = await runWrkCpu(api.url, boltPut(api.token), 1, seconds, pids)
      const b64w = await runWrkCpu(api.url, boltPut(api.token), 64, seconds, pids)
      const br64 = await runWrk(api.url, boltGet(api.token), 64, seconds)
      Object.assign(figures, {
        boltWrites1: b1.rps, boltWrites64: b64w.rps, boltReads64: br64.rps, boltWriteP50Ms1: b1.p50Ms, boltWriteP99Ms64: b64w.p99Ms, boltErrors: b1.errors + b64w.errors + br64.errors,
        leaderCpuMsPerWrite1: b1.cpuMsPerReq[0]!, followerCpuMsPerWrite1: round2(mean(b1.cpuMsPerReq.slice(1))),
        leaderCpuMsPerWrite64: b64w.cpuMsPerReq[0]!, followerCpuMsPerWrite64: round2(mean(b64w.cpuMsPerReq.slice(1)))
      })
    } finally {
      await cluster.destroy()
    }
    const writes1Ratio = figures.boltWrites1! / figures.etcdWrites1!
    const writes64Ratio = figures.boltWrites64! / figures.etcdWrites64!
    const reads64Ratio = figures.boltReads64! / figures.etcdReads64!
    return {
      name: 'raft-vs-etcd',
      figures: { ...figures, writes1Ratio, writes64Ratio, reads64Ratio },
      goal: 'writes1Ratio >= 1 and writes64Ratio >= 1 and reads64Ratio >= 1 (bolt-agent / etcd 3.4, same wrk client, same run)',
      met: writes1Ratio >= 1 && writes64Ratio >= 1 && reads64Ratio >= 1,
      config: { members: 3, valueBytes: VALUE_BYTES, keys: KEYS, seconds, client: 'wrk with a Lua script, 2 threads', etcd: 'Debian etcd-server 3.4, default heartbeat 100 ms, election 1000 ms', bolt: 'PUT|GET /v1/kv/KEY to the leader' }
    }
  }
}
