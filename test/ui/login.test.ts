// The dashboard's login and its boundary, against a real agent over plain
// HTTP: no cookie gets 401 and the login page; a one-time link gives an
// HttpOnly SameSite=Strict cookie once; a foreign Origin cannot change
// anything; the live stream answers a session; a session survives a restart.
import t from 'tap'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Cluster, FAST_TOML, waitFor } from '../helpers/harness.js'

const START_MS = 120_000

interface Answer { status: number, headers: Record<string, string | string[] | undefined>, body: string }

async function http (url: string, opts: { method?: string, headers?: Record<string, string>, body?: string, until?: (body: string) => boolean } = {}): Promise<Answer> {
  return await new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers ?? {} }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        body += d
        // A stream (SSE) ends when the test has what it waits for.
        if (opts.until?.(body) === true) { resolve({ status: res.statusCode ?? 0, headers: res.headers, body }); req.destroy() }
      })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body }) })
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)) })
  })
}

t.test('dashboard login, sessions and Origin on a real agent', async t => {
  const port = await freePort()
  const cluster = await Cluster.create(FAST_TOML)
  t.teardown(async () => { await cluster.destroy() })
  const a = await cluster.add('a', `[api]\nlisten = "127.0.0.1:${port}"\n`)
  const ready = await a.start(['init'], START_MS)
  const base = ready.api
  t.equal((ready as unknown as { dashboard: string }).dashboard, `${base}/ui/`, 'the ready line names the dashboard')
  const token = (JSON.parse(await readFile(join(a.dataDir, 'api.json'), 'utf8')) as { token: string }).token

  const noCookie = await http(`${base}/ui/`)
  t.equal(noCookie.status, 401, 'no cookie: 401')
  t.match(String(noCookie.headers['content-type']), /text\/html/, 'with the login page')
  t.match(noCookie.body, /bolt-agent ui/, 'which says how to log in')
  t.equal((await http(`${base}/v1/status`)).status, 401, 'the API without token or cookie: 401')

  const ui = await a.cli(['ui', '--json'])
  t.equal(ui.code, 0, `ui --json exits 0 (${ui.stderr.trim()})`)
  const link = JSON.parse(ui.stdout) as { url: string, dashboard: string, expiresAt: string }
  t.equal(link.dashboard, `${base}/ui/`)
  t.ok(link.url.startsWith(`${base}/ui/login?code=`), 'a login link on this API')
  t.notOk(link.url.includes(token), 'the link does not hold the API token')
  const human = await a.cli(['ui'])
  t.match(human.stdout, /^http:\/\/127\.0\.0\.1:\d+\/ui\/login\?code=/, 'without --json the link is the first line')

  const wrong = await http(`${base}/ui/login?code=not-a-code`)
  t.equal(wrong.status, 401, 'a wrong code: 401')
  t.match(wrong.body, /wrong, expired or already used/)

  const login = await http(link.url)
  t.equal(login.status, 303, 'the code logs in')
  t.equal(login.headers.location, '/ui/')
  const setCookie = String(login.headers['set-cookie'])
  t.match(setCookie, new RegExp(`^bolt_ui_${port}=`), 'a cookie named for this API port')
  t.match(setCookie, /HttpOnly/)
  t.match(setCookie, /SameSite=Strict/)
  t.match(setCookie, /Path=\//)
  t.notOk(setCookie.includes(token), 'the cookie is not the API token')
  const cookie = setCookie.split(';')[0]!
  t.equal((await http(link.url)).status, 401, 'a reused code: 401')

  const page = await http(`${base}/ui/`, { headers: { cookie } })
  t.equal(page.status, 200, 'the cookie opens the dashboard')
  t.match(String(page.headers['content-security-policy']), /script-src 'self'/, 'under a CSP that allows no inline script')
  const js = await http(`${base}/ui/app.js`, { headers: { cookie } })
  t.equal(js.status, 200, 'and its script')
  t.notOk(page.body.includes(token) || js.body.includes(token), 'the API token is in neither')
  t.equal((await http(`${base}/ui/..%2Fapi.json`, { headers: { cookie } })).status, 404, 'no file outside the bundle')
  t.equal((await http(`${base}/v1/status`, { headers: { cookie } })).status, 200, 'the cookie reads the API')
  t.equal((await http(`${base}/v1/status`, { headers: { cookie: `bolt_ui_${port + 1}=${cookie.split('=')[1]}` } })).status, 401, 'under another port\'s name it does not')
  t.equal((await http(`${base}/v1/status`, { headers: { cookie: cookie.slice(0, -2) + 'AA' } })).status, 401, 'a tampered cookie: 401')

  const stop = `${base}/v1/capsules/nothing-here/stop`
  t.equal((await http(stop, { method: 'POST', headers: { cookie, origin: 'http://evil.example' } })).status, 403, 'a POST with a foreign Origin: 403')
  t.equal((await http(stop, { method: 'POST', headers: { cookie, origin: `http://127.0.0.1:${port + 1}` } })).status, 403, 'another port is another origin: 403')
  t.equal((await http(stop, { method: 'POST', headers: { cookie } })).status, 403, 'a cookie POST without Origin: 403')
  t.equal((await http(stop, { method: 'POST', headers: { authorization: `Bearer ${token}`, origin: 'http://evil.example' } })).status, 403, 'a foreign Origin is refused with the token too')
  t.equal((await http(stop, { method: 'POST', headers: { cookie, origin: `http://127.0.0.1:${port}` } })).status, 404, 'from its own origin the request reaches the API (no such capsule)')
  t.equal((await http(stop, { method: 'POST', headers: { authorization: `Bearer ${token}` } })).status, 404, 'the CLI\'s way (token, no Origin) is unchanged')

  const sse = await http(`${base}/v1/ui/events`, { headers: { cookie }, until: b => b.includes('event: capsules') })
  t.equal(sse.status, 200, 'the live stream answers the session')
  t.match(String(sse.headers['content-type']), /text\/event-stream/)
  t.match(sse.body, /event: status\ndata: \{/, 'with the status first')
  const metrics = JSON.parse((await http(`${base}/v1/ui/metrics`, { headers: { cookie } })).body) as Record<string, number[]>
  t.same(Object.keys(metrics).sort(), ['commits', 'cpu', 'peerBytes', 'registryBytes', 'rss', 'running', 'time'], 'the metrics ring has every series')

  await a.stop()
  await a.start(['start'], START_MS)
  const back = await waitFor(async () => (await http(`${base}/v1/status`, { headers: { cookie } })).status === 200, 30_000)
  t.ok(back >= 0, 'the session still works after the agent restarts')
  t.equal((await http(link.url)).status, 401, 'and a code spent before the restart stays spent')
})
