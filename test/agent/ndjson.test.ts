// Streaming JSON lines to an HTTP client (the API's `logs`): every value
// arrives in order, a late error becomes a last line, and a client that
// leaves while the socket is full ends the handler and closes the iterator,
// instead of leaving both waiting for a 'drain' that never comes. A write
// made in the moment between a client's leaving and the response's 'close'
// still hands back its bytes (writeThen), and no wait begins then.
import t, { type Test } from 'tap'
import { createServer, get, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { clientGone, drained, streamNdjson, writeThen } from '../../agent/api/ndjson.js'

async function serve (t: Test, values: () => AsyncIterable<unknown>): Promise<{ url: string, handled: Promise<void> }> {
  let done!: () => void
  let failed!: (e: unknown) => void
  const handled = new Promise<void>((resolve, reject) => { done = resolve; failed = reject })
  const server: Server = createServer((_req, res) => { streamNdjson(res, values()).then(done, failed) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, handled }
}

async function open (url: string): Promise<IncomingMessage> {
  return await new Promise((resolve, reject) => get(url, resolve).on('error', reject))
}

async function body (res: IncomingMessage): Promise<string> {
  let s = ''
  for await (const chunk of res) s += String(chunk)
  return s
}

t.test('every value arrives as a line, in order, and the response ends', async t => {
  const { url, handled } = await serve(t, async function * () { for (let i = 0; i < 1000; i++) yield { i, pad: 'x'.repeat(500) } })
  const res = await open(url)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-type'], 'application/x-ndjson')
  const lines = (await body(res)).trimEnd().split('\n').map(l => JSON.parse(l) as { i: number })
  t.same(lines.map(l => l.i), Array.from({ length: 1000 }, (_, i) => i))
  await handled
})

t.test('an error after the first value becomes a last error line', async t => {
  const { url, handled } = await serve(t, async function * () { yield { a: 1 }; throw new Error('capsule vanished') })
  const lines = (await body(await open(url))).trimEnd().split('\n').map(l => JSON.parse(l) as unknown)
  t.same(lines, [{ a: 1 }, { error: 'capsule vanished' }])
  await handled
})

t.test('a client that stops reading and leaves ends the stream and closes the iterator', async t => {
  let yielded = 0
  let closed = false
  // Endless, like `logs --follow` on a chatty capsule.
  const { url, handled } = await serve(t, async function * () {
    try {
      for (;;) { yielded++; yield { line: 'y'.repeat(16 * 1024) } }
    } finally {
      closed = true
    }
  })
  const res = await open(url)
  res.pause()
  // Wait until the server has filled the socket and waits for it to drain.
  let seen = -1
  while (yielded !== seen) { seen = yielded; await new Promise(resolve => setTimeout(resolve, 200)) }
  t.ok(yielded > 1, `the server stopped writing once the client stopped reading (after ${yielded} lines)`)
  res.destroy()
  let timer: NodeJS.Timeout | undefined
  const late = new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error('the handler still waits 10 s after the client left')), 10_000) })
  await t.resolves(Promise.race([handled, late]).finally(() => clearTimeout(timer)))
  t.ok(closed, "the iterator's finally ran")
})

t.test('a write after the socket is gone, before the response closes: done is called, drained does not wait', async t => {
  const seen = await new Promise<{ gone: boolean, destroyed: boolean, wrote: boolean, done: number, waited: boolean }>((resolve, reject) => {
    const server = createServer((req, res) => {
      res.writeHead(200)
      req.socket.destroy()
      // Node's 'close' for res comes a tick after this: a plain res.write's
      // callback made now is never called (the pooled buffer would be lost).
      let done = 0
      const wrote = writeThen(res, new Uint8Array(1024), () => { done++ })
      let waited = true
      const destroyed = res.destroyed
      drained(res).then(() => { waited = false }, reject)
      setImmediate(() => { resolve({ gone: clientGone(res), destroyed, wrote, done, waited }) })
    })
    t.teardown(() => { server.closeAllConnections(); server.close() })
    server.listen(0, '127.0.0.1', () => {
      get(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, res => res.resume()).on('error', () => {})
    })
  })
  t.notOk(seen.destroyed, 'the response did not know yet (the moment this guards)')
  t.ok(seen.gone, 'clientGone sees the destroyed socket')
  t.equal(seen.wrote, false, 'the writer is told to stop')
  t.equal(seen.done, 1, 'done was called once')
  t.notOk(seen.waited, 'drained resolved at once')
})
