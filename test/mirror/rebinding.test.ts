// DNS rebinding against the mirror's upstream fetches: a name that resolves
// to a public address when the guard checks it, and to 127.0.0.1 when the
// connection is opened (TTL 0), must not reach the loopback server. Real
// sockets and a real HTTP server; only the two DNS answers are scripted.
import t from 'tap'
import { createServer, type Server } from 'node:http'
import type { LookupAddress } from 'node:dns'
import { guardedFetch, UpstreamGuard } from '../../agent/mirror/upstream-guard.js'
import { RegistryClient } from '../../p2p/content/registry-client.js'
import { parseReference } from '../../p2p/content/reference.js'

const NAME = 'rebind.example'

async function loopbackServer (t: Tap): Promise<{ port: number, seen: string[] }> {
  const seen: string[] = []
  const server: Server = createServer((req, res) => { seen.push(req.url ?? ''); res.writeHead(200, { 'content-type': 'text/plain' }); res.end('internal secret') })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { server.closeAllConnections(); await new Promise<void>(resolve => server.close(() => resolve())) })
  return { port: (server.address() as { port: number }).port, seen }
}
interface Tap { teardown: (fn: () => Promise<void>) => void }

/** The second answer of a rebinding name: loopback. */
const toLoopback = (_host: string, _o: unknown, cb: (err: NodeJS.ErrnoException | null, a: LookupAddress[]) => void): void => { cb(null, [{ address: '127.0.0.1', family: 4 }]) }

t.test('a name checked as public and dialed as loopback is refused at connect; the server sees nothing', async t => {
  const { port, seen } = await loopbackServer(t)
  const url = `http://${NAME}:${port}/v2/`
  // The first answer, the one the pre-fetch check sees: a public address.
  const guard = new UpstreamGuard({ privateHosts: [], lookup: async () => ['93.184.216.34'] })
  await guard.check(new URL(url))
  t.pass('the pre-fetch check lets the name through')

  const err = await guardedFetch([], toLoopback)(url).then(() => undefined, (e: Error) => e)
  t.ok(err !== undefined, 'the fetch fails')
  t.match(String((err as Error & { cause?: Error })?.cause?.message ?? err?.message), /refusing to connect to rebind\.example.*127\.0\.0\.1/, 'because the dialed address is loopback')
  t.same(seen, [], 'the loopback server received no request')

  const allowed = await guardedFetch([NAME], toLoopback)(url)
  t.equal(await allowed.text(), 'internal secret', 'a host in allow_private_hosts connects through the same lookup')
  t.same(seen, ['/v2/'], 'and that request (only) arrived')
})

t.test('the registry client with both guards: a rebinding upstream gets no request', async t => {
  const { port, seen } = await loopbackServer(t)
  const guard = new UpstreamGuard({ privateHosts: [], lookup: async () => ['93.184.216.34'] })
  const client = new RegistryClient({
    insecure: [`${NAME}:${port}`],
    guard: async url => { await guard.check(url) },
    fetch: guardedFetch([], toLoopback),
    retries: 0
  })
  await t.rejects(client.resolve(parseReference(`${NAME}:${port}/library/busybox:1`)), 'the manifest fetch fails')
  t.same(seen, [], 'the loopback server received no request')
})
