// The dashboard's server part on a real ApiServer with fed sources (the
// real-agent tests are login.test.ts and browser.test.ts): the dashboard
// module loads only once a logged-in page asks for it; membership events and
// committed commands reach an open stream; the timeline and the metrics
// ring stay bounded.
import t from 'tap'
import fc from 'fast-check'
import { request } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ApiServer } from '../../agent/api/server.js'
import { registerUi, TIMELINE_EVENTS } from '../../agent/ui/ui.js'
import { MetricsRing } from '../../agent/ui/ring.js'
import type { MemberEventView, UiSources } from '../../agent/ui/sources.js'
import { PullsInProgress } from '../../agent/pulls-in-progress.js'

const TOKEN = 'x'.repeat(32)

function fedSources (dataDir: string, signal: AbortSignal): { src: UiSources, member: (e: MemberEventView) => void, apply: (op: string) => void, capsules: Array<{ name: string, state: string }>, pulls: PullsInProgress } {
  const pulls = new PullsInProgress()
  let onMember: (e: MemberEventView) => void = () => {}
  let onApply: (op: string) => void = () => {}
  const capsules: Array<{ name: string, state: string }> = []
  return {
    src: {
      dataDir,
      signal,
      version: 'test',
      status: () => ({ node: { id: 'n1', name: 'one' }, leader: 'n1', term: 1, members: [] }),
      capsules: () => capsules,
      raft: () => ({ term: 1, commit: 0 }),
      onMember: (cb) => { onMember = cb },
      onApply: (cb) => { onApply = cb },
      instanceStats: async () => undefined,
      pulls: () => pulls.list(),
      onPulls: (cb) => { pulls.onChange(cb) },
      sample: { contentBytes: () => ({ peers: 0, registry: 0 }), commitIndex: () => 0, capsulesRunning: () => capsules.filter(c => c.state === 'running').length }
    },
    member: (e) => { onMember(e) },
    apply: (op) => { onApply(op) },
    capsules,
    pulls
  }
}

async function http (url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number, headers: Record<string, unknown>, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body }) })
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('lazy load, live pushes and bounds', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-ui-routes-'))
  const ac = new AbortController()
  const api = new ApiServer(TOKEN)
  t.teardown(async () => { ac.abort(); await api.close(); await rm(dir, { recursive: true, force: true }) })
  const fed = fedSources(dir, ac.signal)
  const ui = await registerUi(api, fed.src)
  const base = await api.listen('127.0.0.1:0')

  t.equal(ui.dashboard(), undefined, 'nothing of the dashboard is loaded at start')
  t.equal((await http(`${base}/ui/`)).status, 401, 'a page without a session')
  t.equal(ui.dashboard(), undefined, 'a login page loads nothing either')
  const code = JSON.parse((await http(`${base}/v1/ui/login`, { authorization: `Bearer ${TOKEN}` }, 'POST')).body) as { path: string }
  const login = await http(`${base}${code.path}`)
  const cookie = String(login.headers['set-cookie']).split(';')[0]!
  await http(`${base}/ui/`, { cookie })
  t.ok(ui.dashboard(), 'the first logged-in page loads it')

  for (let i = 0; i < TIMELINE_EVENTS + 10; i++) fed.member({ kind: 'updated', id: `p${i}`, name: `m${i}`, state: 'alive', time: i })
  t.equal(ui.timeline.length, TIMELINE_EVENTS, 'the timeline keeps its last events only')
  t.equal(ui.timeline[0]!.id, 'p10')

  // An open stream gets a membership event and, after a commit, the new capsule table.
  const got = await new Promise<string>((resolve, reject) => {
    const port = new URL(base).port
    const req = request(`${base}/v1/ui/events`, { headers: { cookie, host: `127.0.0.1:${port}` } }, res => {
      let body = ''
      let fed1 = false
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        body += d
        if (!fed1 && body.includes('event: pulls')) {
          fed1 = true
          fed.member({ kind: 'failed', id: 'zz', name: 'gone', state: 'dead', time: 1 })
          fed.capsules.push({ name: 'fresh', state: 'running' })
          fed.apply('capsule.create')
          // A capsule start's pull reports many times; the page gets its newest progress.
          const p = fed.pulls.begin('reg.example/app:1', 'capsule')
          for (let i = 1; i <= 50; i++) p.update({ ref: 'reg.example/app:1', phase: 'blobs', totalBytes: 5000, doneBytes: i * 100, bytesFromPeers: i * 100, bytesFromRegistry: 0, bytesLocal: 0, blobs: 2, blobsDone: 0 })
        }
        if (body.includes('"name":"fresh"') && body.includes('"doneBytes":5000')) { req.destroy(); resolve(body) }
      })
    })
    req.on('error', reject)
    req.end()
  })
  t.match(got, /event: member\ndata: \{"kind":"failed","id":"zz","name":"gone","state":"dead"/, 'the membership event is pushed')
  t.match(got, /event: pulls\ndata: \[\]\n/, 'the stream opens with the pulls in progress: none')
  t.match(got, /event: pulls\ndata: \[\{"id":1,"ref":"reg.example\/app:1","startedBy":"capsule","startedAt":\d+,"progress":\{"ref":"reg.example\/app:1","phase":"blobs","totalBytes":5000,"doneBytes":5000/, 'a capsule-started pull is pushed with its progress')
  t.ok((got.match(/event: pulls/g) ?? []).length < 10, 'fifty reports coalesce into a few pushes')
  // The stack form's decoder: any body gets a plan or one 400 line, never a 500.
  const post = async (body: string): Promise<number> => await new Promise((resolve, reject) => {
    const req = request(`${base}/v1/ui/stack`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } }, res => { res.resume(); res.on('end', () => { resolve(res.statusCode ?? 0) }) })
    req.on('error', reject)
    req.end(body)
  })
  await fc.assert(fc.asyncProperty(fc.oneof(fc.string({ maxLength: 400 }), fc.string({ maxLength: 400 }).map(toml => JSON.stringify({ toml })), fc.constantFrom('[capsules.a]\nimage = "x"\ndepends_on = ["a"]\n', '[capsules.a]\nimage = "x"\nports = ["80:80", "80:80"]\n').map(toml => JSON.stringify({ toml }))), async (body) => {
    const status = await post(body)
    return status === 200 || status === 400
  }), { numRuns: 150 })
  t.equal(await post(JSON.stringify({ toml: '[capsules.b]\nimage = "x"\n[capsules.a]\nimage = "x"\ndepends_on = ["b"]\n' })), 200, 'a good stack gets its plan')
  t.match(got, /event: capsules\ndata: \[\{"name":"fresh","state":"running"\}\]/, 'and the capsule table after the commit')
})

t.test('the metrics ring: rates per second, bounded, oldest first', async t => {
  let peers = 0
  let commit = 0
  const ring = new MetricsRing({ contentBytes: () => ({ peers, registry: 0 }), commitIndex: () => commit, capsulesRunning: () => 3 }, 10)
  t.equal(ring.latest(), undefined, 'nothing before two samples')
  ring.sample(0)
  for (let i = 1; i <= 25; i++) { peers += 5000 * i; commit += 10; ring.sample(i * 5000) }
  const d = ring.data()
  t.equal(d.time.length, 10, 'ten samples kept')
  t.same(d.time, Array.from({ length: 10 }, (_, i) => (16 + i) * 5), 'the newest ten, oldest first')
  t.same(d.commits, Array(10).fill(2), '10 commits in 5 s: 2/s')
  t.equal(d.peerBytes[9], 25_000, 'bytes per second from peers')
  t.equal(ring.latest()!.running, 3)
})
