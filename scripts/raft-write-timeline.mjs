// Where one write's time goes, step by step across the three members of a
// Raft cluster: `wrk` sends PUTs at one connection to the leader while each
// agent marks its write path (BOLT_RAFT_TIMELINE, agent/raft/timeline.ts);
// the marks, on one monotonic clock, are matched by log index and printed
// as per-step latencies (p50/p90). At one writer a CPU profile is mostly
// idle time; this shows which wait a write spends it in. Build first, then:
//   node_modules/.bin/node scripts/raft-write-timeline.mjs [seconds=6] [keep-dir]
// Run it under the benchmark lock on a shared machine (flock /tmp/bolt-bench.lock).
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster } from '../dist/test/helpers/harness.js'
import { RAFT_TOML, agreedLeader, apiOf, formVoters, kv } from '../dist/scenarios/_raft.js'

const seconds = Number(process.argv[2] ?? 6)
const keep = process.argv[3]
const dir = keep ?? await mkdtemp(join(tmpdir(), 'bolt-timeline-'))
await mkdir(dir, { recursive: true })
const value = 'v'.repeat(256)

process.env.BOLT_RAFT_TIMELINE = dir
const cluster = await Cluster.create(RAFT_TOML(3))
let leaderPid
let wrkOut = ''
try {
  const agents = await formVoters(cluster, 3)
  const lead = await agreedLeader(agents, 30_000)
  const leader = agents.find(a => a.id === lead?.leader)
  if (leader === undefined) throw new Error('no leader')
  leaderPid = leader.proc.pid
  const api = await apiOf(leader)
  for (let k = 0; k < 100; k++) await kv(api, 'PUT', `/v1/kv/k${k}`, { value })
  const script = join(dir, 'put.lua')
  await writeFile(script, `request = function()
  return wrk.format("PUT", "/v1/kv/k" .. math.random(0, 999), {["Content-Type"]="application/json", ["Authorization"]="Bearer ${api.token}"}, '{"value":"${value}"}')
end
`)
  wrkOut = await new Promise((resolve, reject) => {
    const p = spawn('/usr/bin/wrk', ['-t', '1', '-c', '1', '-d', `${seconds}s`, '--latency', '-s', script, api.url], { stdio: ['ignore', 'pipe', 'inherit'] })
    let text = ''
    p.stdout.on('data', d => { text += d })
    p.once('error', reject)
    p.once('exit', code => { code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}`)) })
  })
} finally {
  delete process.env.BOLT_RAFT_TIMELINE
  await cluster.destroy() // agents write their timelines as Raft stops
}

// ---- analysis ---------------------------------------------------------------
const marks = []
for (const f of (await readdir(dir)).filter(f => f.startsWith('timeline-'))) {
  for (const line of (await readFile(join(dir, f), 'utf8')).split('\n')) {
    const [t, pid, point, index] = line.split(' ')
    if (point !== undefined) marks.push({ t: Number(t), pid: Number(pid), point, index: Number(index) })
  }
}
marks.sort((a, b) => a.t - b.t)
const leaderMarks = marks.filter(m => m.pid === leaderPid)
const followers = [...new Set(marks.map(m => m.pid))].filter(p => p !== leaderPid)

/** First mark of `pid` with `point` and `index` (exact), as a map index -> time. */
function firstBy (pid, point) {
  const out = new Map()
  for (const m of marks) if (m.pid === pid && m.point === point && !out.has(m.index)) out.set(m.index, m.t)
  return out
}
const L = { ready: firstBy(leaderPid, 'ready'), sent: firstBy(leaderPid, 'sent'), persist: firstBy(leaderPid, 'persist'), persisted: firstBy(leaderPid, 'persisted'), written: firstBy(leaderPid, 'written') }
const F = followers.map(pid => ({ inApp: firstBy(pid, 'in:app'), persist: firstBy(pid, 'persist'), persisted: firstBy(pid, 'persisted'), out: firstBy(pid, 'out:appResp'), handed: firstBy(pid, 'handed:appResp') }))
const acks = leaderMarks.filter(m => m.point === 'in:appResp')

const steps = {
  'API write -> leader Ready': [],
  'leader Ready -> appends handed to the transport': [],
  'leader Ready -> first follower receives the append': [],
  'follower: append received -> its write starts': [],
  'follower: its synced write (fsync)': [],
  'follower: written -> its ack handed to the transport': [],
  'follower: ack out -> leader receives it': [],
  'leader: first ack -> write answered': [],
  'leader: its own synced write (in parallel)': [],
  'total: API write -> answered': []
}
let ownWriteLast = 0
const ownWriteWait = []
let counted = 0
let lastWrite = 0
for (const m of leaderMarks) {
  if (m.point === 'write') { lastWrite = m.t; continue }
  if (m.point !== 'written' || lastWrite === 0) continue
  const i = m.index
  const ready = L.ready.get(i)
  const fs = F.map(f => ({ recv: f.inApp.get(i), persist: f.persist.get(i), persisted: f.persisted.get(i), out: f.out.get(i), handed: f.handed.get(i) }))
    .filter(f => Object.values(f).every(v => v !== undefined)).sort((a, b) => a.out - b.out)
  const ack = acks.find(a => a.index >= i && a.t >= (ready ?? 0))
  const lp = L.persist.get(i)
  const lpd = L.persisted.get(i)
  if (ready === undefined || fs.length === 0 || ack === undefined || lp === undefined || lpd === undefined) { lastWrite = 0; continue }
  const f = fs[0]
  counted++
  steps['API write -> leader Ready'].push(ready - lastWrite)
  if (L.sent.has(i)) steps['leader Ready -> appends handed to the transport'].push(L.sent.get(i) - ready)
  steps['leader Ready -> first follower receives the append'].push(Math.min(...fs.map(x => x.recv)) - ready)
  steps['follower: append received -> its write starts'].push(f.persist - f.recv)
  steps['follower: its synced write (fsync)'].push(f.persisted - f.persist)
  steps['follower: written -> its ack handed to the transport'].push(f.handed - f.persisted)
  steps['follower: ack out -> leader receives it'].push(ack.t - f.out)
  steps['leader: first ack -> write answered'].push(m.t - ack.t)
  steps['leader: its own synced write (in parallel)'].push(lpd - lp)
  steps['total: API write -> answered'].push(m.t - lastWrite)
  if (lpd > ack.t) { ownWriteLast++; ownWriteWait.push(lpd - ack.t) }
  lastWrite = 0
}

const q = (xs, f) => { const s = [...xs].sort((a, b) => a - b); return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(f * s.length))] }
const ms = us => (us / 1000).toFixed(2).padStart(6)
console.log(wrkOut.split('\n').filter(l => /Requests\/sec|50%|99%/.test(l)).map(l => l.trim()).join('  |  '))
console.log(`writes matched: ${counted}; the leader's own write ended after the first ack in ${ownWriteLast} (${(100 * ownWriteLast / Math.max(1, counted)).toFixed(0)}%), by ${ms(q(ownWriteWait, 0.5)).trim()} ms at the median of those`)
console.log('wrk\'s latency less the total below: HTTP (parser, route, body, the answer\'s write) and wrk itself')
console.log(`${'step'.padEnd(54)} p50 ms  p90 ms`)
for (const [name, xs] of Object.entries(steps)) console.log(`${name.padEnd(54)} ${ms(q(xs, 0.5))}  ${ms(q(xs, 0.9))}`)
if (keep === undefined) await rm(dir, { recursive: true, force: true })
else console.log(`timelines kept in ${dir}`)
