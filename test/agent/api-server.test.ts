// The agent's HTTP API server: a handler's signal aborts when its client
// leaves before the answer is complete (a pull or a write stops), and never
// after a complete answer. Real HTTP on loopback.
import t from 'tap'
import { request } from 'node:http'
import { ApiServer } from '../../agent/api/server.js'

const TOKEN = 'secret-token'

t.test("a handler's signal: aborted when the client leaves mid-request, not after a complete answer", async t => {
  const api = new ApiServer(TOKEN)
  const signals: AbortSignal[] = []
  let entered!: () => void
  const inSlow = new Promise<void>(resolve => { entered = resolve })
  let quickClosed!: Promise<void>
  api.route('GET', '/v1/quick', async (req, res) => {
    signals.push(req.signal)
    // Registered after the server's own 'close' listener, so it runs after it.
    quickClosed = new Promise(resolve => { res.on('close', () => { resolve() }) })
    return { ok: true }
  })
  api.route('GET', '/v1/slow', async req => {
    signals.push(req.signal)
    entered()
    await new Promise<void>(resolve => { req.signal.addEventListener('abort', () => { resolve() }) })
    return { late: true }
  })
  const url = await api.listen('127.0.0.1:0')
  t.teardown(async () => { await api.close() })

  const quick = await fetch(`${url}/v1/quick`, { headers: { authorization: `Bearer ${TOKEN}` } })
  t.same(await quick.json(), { ok: true })
  await quickClosed
  t.notOk(signals[0]?.aborted, 'a complete answer leaves its signal alone, once the server has seen the response close')

  const req = request(`${url}/v1/slow`, { headers: { authorization: `Bearer ${TOKEN}` } })
  req.on('error', () => {})
  req.end()
  await inSlow
  req.destroy()
  const slowSignal = signals[1] as AbortSignal
  const aborted = await new Promise<boolean>(resolve => {
    if (slowSignal.aborted) { resolve(true); return }
    const timer = setTimeout(() => { resolve(false) }, 10_000)
    slowSignal.addEventListener('abort', () => { clearTimeout(timer); resolve(true) })
  })
  t.ok(aborted, 'the handler of a client that left is aborted')
})

/** A GET with a chosen Host header (fetch does not let one set it). */
async function getWithHost (url: string, host: string): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = request(url, { headers: { host } }, res => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('a foreign Host gets 421, /metrics included (DNS rebinding); loopback and configured names are served', async t => {
  const api = new ApiServer(TOKEN, { allowedHosts: ['bolt.internal'] })
  let served = 0
  api.route('GET', '/metrics', async () => { served++; return 'metrics' }, { open: true })
  const url = await api.listen('127.0.0.1:0')
  t.teardown(async () => { await api.close() })
  const port = new URL(url).port
  for (const host of [`rebind.attacker.example:${port}`, 'rebind.attacker.example', `192.0.2.1:${port}`]) {
    const r = await getWithHost(`${url}/metrics`, host)
    t.equal(r.status, 421, `Host ${host}: 421`)
    t.equal((JSON.parse(r.body) as { name: string }).name, 'ForeignHostError')
  }
  t.equal(served, 0, 'no handler ran for a foreign Host')
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `bolt.internal:${port}`]) {
    t.equal((await getWithHost(`${url}/metrics`, host)).status, 200, `Host ${host}: served`)
  }
})

t.test('the API refuses a non-loopback address without allow_remote', async t => {
  const api = new ApiServer(TOKEN)
  await t.rejects(api.listen('0.0.0.0:0'), { name: 'ApiBindRefusedError', message: /allow_remote/ })
  const remote = new ApiServer(TOKEN, { allowRemote: true })
  const url = await remote.listen('0.0.0.0:0')
  t.teardown(async () => { await remote.close() })
  t.match(url, /^http:\/\/0\.0\.0\.0:\d+$/, 'allowed with allow_remote')
})

t.test('routes and bodies: the first route of the method wins, 404 and 405 for misses, bodies bounded and parsed', async t => {
  const api = new ApiServer(TOKEN)
  api.route('GET', '/v1/kv/:key', async req => ({ got: req.params.key }))
  api.route('PUT', '/v1/kv/:key', async req => ({ put: req.params.key, body: await req.body() }))
  api.route('PUT', '/v1/kv/:key', async () => ({ second: true }))
  const url = await api.listen('127.0.0.1:0')
  t.teardown(async () => { await api.close() })
  const auth = { authorization: `Bearer ${TOKEN}` }
  const put = async (body: string | Uint8Array): Promise<Response> => await fetch(`${url}/v1/kv/a%20b`, { method: 'PUT', headers: auth, body })

  t.same(await (await fetch(`${url}/v1/kv/x`, { headers: auth })).json(), { got: 'x' })
  t.same(await (await put('{"value":"v"}')).json(), { put: 'a b', body: { value: 'v' } }, 'the first PUT route, the body parsed')
  t.same(await (await put('')).json(), { put: 'a b', body: {} }, 'an empty body is {}')
  t.equal((await put('{nope')).status, 400)
  t.equal((await put(new Uint8Array(1024 * 1024 + 1).fill(32))).status, 413)
  t.equal((await fetch(`${url}/v1/kv/x`, { method: 'DELETE', headers: auth })).status, 405)
  t.equal((await fetch(`${url}/v1/nothing`, { headers: auth })).status, 404)
  t.equal((await fetch(`${url}/v1/kv/x`, { headers: { authorization: 'Bearer wrong-token!' } })).status, 401)
})
