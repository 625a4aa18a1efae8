// The agent's API and mirror as a real agent serves them: debug routes
// exist only with [debug] enabled, a foreign Host is refused (API and
// mirror), and a non-loopback API address needs allow_remote.
import t from 'tap'
import { request } from 'node:http'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Cluster, FAST_TOML } from '../helpers/harness.js'

/** An agent start takes seconds alone and much longer on a shared, loaded machine. */
const START_MS = 120_000

async function getWithHost (url: string, host: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = request(url, { headers: { host } }, res => { res.resume(); res.on('end', () => { resolve(res.statusCode ?? 0) }) })
    req.on('error', reject)
    req.end()
  })
}

async function apiOf (dataDir: string): Promise<{ url: string, token: string }> {
  return JSON.parse(await readFile(join(dataDir, 'api.json'), 'utf8')) as { url: string, token: string }
}

async function post (api: { url: string, token: string }, path: string, body: unknown): Promise<number> {
  const res = await fetch(`${api.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  await res.body?.cancel()
  return res.status
}

t.test('debug routes, Host and allow_remote on a real agent', async t => {
  const cluster = await Cluster.create(FAST_TOML)
  t.teardown(async () => { await cluster.destroy() })
  const a = await cluster.add('a', '[mirror]\nlisten = "127.0.0.1:0"\n')
  const ready = await a.start(['init'], START_MS)
  const api = await apiOf(a.dataDir)

  t.equal(await post(api, '/v1/debug/partition', { peers: [] }), 404, 'no /v1/debug/partition without [debug]')
  t.equal(await post(api, '/v1/debug/drop-rate', { rate: 0 }), 404, 'no /v1/debug/drop-rate without [debug]')

  const port = new URL(api.url).port
  t.equal(await getWithHost(`${api.url}/metrics`, `rebind.attacker.example:${port}`), 421, 'the API refuses a foreign Host, /metrics included')
  t.equal(await getWithHost(`${api.url}/metrics`, `127.0.0.1:${port}`), 200, 'and serves its own address')
  const mirror = (ready as unknown as { mirror: string }).mirror
  const mport = new URL(mirror).port
  t.equal(await getWithHost(`${mirror}/v2/`, `rebind.attacker.example:${mport}`), 421, 'the mirror refuses a foreign Host')
  // The registry's ping answers 401 with its token realm (a client without a token fetches one anonymously).
  t.equal(await getWithHost(`${mirror}/v2/`, `localhost:${mport}`), 401, 'and serves loopback names')

  const d = await cluster.add('d', '[debug]\nenabled = true\n')
  await d.start(['join', ready.node.addrs.find(x => x.includes('/quic-v1'))!, '--token', ready.token], START_MS)
  t.equal(await post(await apiOf(d.dataDir), '/v1/debug/drop-rate', { rate: 0 }), 200, 'with [debug] enabled the fault hooks exist')

  const r = await cluster.add('r', '[api]\nlisten = "0.0.0.0:0"\n')
  await t.rejects(r.start(['init'], START_MS), /allow_remote/, 'an API on 0.0.0.0 without allow_remote: the agent refuses to start and says which key')
})
