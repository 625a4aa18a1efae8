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
  api.route('GET', '/v1/quick', async req => { signals.push(req.signal); return { ok: true } })
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
  // Let the server see the response's close.
  await new Promise(resolve => setTimeout(resolve, 100))
  t.notOk(signals[0]?.aborted, 'a complete answer leaves its signal alone')

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
