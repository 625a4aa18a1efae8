// A chunked blob upload survives a restart of the real agent it goes to:
// half the blob, the agent stops and starts again (same data dir, same
// registry port), `GET` of the upload tells the offset, the rest follows
// and the blob is stored with its digest verified.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { Cluster } from '../helpers/harness.js'
import { RAFT_TOML } from '../../scenarios/_raft.js'
import { freePort } from '../helpers/registry.js'

t.test('an upload in progress goes on after the agent restarts', async t => {
  const port = await freePort()
  const cluster = await Cluster.create(RAFT_TOML(1))
  t.teardown(async () => { await cluster.destroy() })
  const a = await cluster.add('a', `[mirror]\nlisten = "127.0.0.1:${port}"\n[registry]\nreplicas = 1\n`)
  await a.start(['init'], 120_000)
  const tok = await a.cli(['registry', 'token', '--json'])
  t.equal(tok.code, 0, tok.stderr)
  const auth = { authorization: `Bearer ${(JSON.parse(tok.stdout) as { password: string }).password}` }
  const base = `http://127.0.0.1:${port}`
  const blob = randomBytes(300 * 1024 + 11)
  const digest = 'sha256:' + createHash('sha256').update(blob).digest('hex')
  const half = 150 * 1024

  const started = await fetch(`${base}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: auth })
  t.equal(started.status, 202, 'upload started')
  const loc = new URL(started.headers.get('location') ?? '', base).toString()
  const first = await fetch(loc, { method: 'PATCH', headers: { ...auth, 'content-type': 'application/octet-stream', 'content-range': `0-${half - 1}`, 'content-length': String(half) }, body: blob.subarray(0, half) })
  t.equal(first.status, 202, 'the first half is taken')

  await a.stop()
  await a.start(['start'], 120_000)

  const status = await fetch(loc, { headers: auth })
  t.equal(status.status, 204, 'the upload is known after the restart')
  t.equal(status.headers.get('range'), `0-${half - 1}`, 'with the bytes it had')
  const wrongRepo = await fetch(loc.replace('/team/app/', '/team/other/'), { headers: auth })
  t.equal(wrongRepo.status, 404, 'and only in its own repository')
  const rest = await fetch(loc, { method: 'PATCH', headers: { ...auth, 'content-type': 'application/octet-stream', 'content-range': `${half}-${blob.length - 1}`, 'content-length': String(blob.length - half) }, body: blob.subarray(half) })
  t.equal(rest.status, 202, 'the rest follows')
  const done = await fetch(`${loc}${loc.includes('?') ? '&' : '?'}digest=${digest}`, { method: 'PUT', headers: auth })
  t.equal(done.status, 201, `the blob is stored with its digest verified (${done.status === 201 ? 'ok' : await done.text()})`)
  const head = await fetch(`${base}/v2/team/app/blobs/${digest}`, { method: 'HEAD' })
  t.equal(head.status, 200, 'and served')
  t.equal(head.headers.get('content-length'), String(blob.length))
})
