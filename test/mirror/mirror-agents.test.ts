// The mirror in real agents: three agents, the upstream (docker-registry)
// behind a counting proxy, skopeo pulling through each agent's mirror.
import t from 'tap'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer } from 'node:net'
import { Cluster, FAST_TOML, waitFor, type AgentProcess } from '../helpers/harness.js'
import { buildImage, pushImage, startCountingProxy, startRegistry, REGISTRY_BIN, type BuiltImage } from '../helpers/registry.js'

/** An agent start takes seconds alone and much longer on a shared, loaded machine. */
const START_MS = 120_000

async function skopeo (args: string[]): Promise<{ code: number, out: string }> {
  return await new Promise(resolve => {
    execFile('skopeo', args, { timeout: 90_000, maxBuffer: 8 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? 1), out: stdout + stderr })
    })
  })
}

async function holds (dir: string, img: BuiltImage): Promise<boolean> {
  for (const d of [img.configDigest, ...img.layers.map(l => l.digest)]) {
    const bytes = await readFile(join(dir, d.slice(7))).catch(() => undefined)
    if (bytes === undefined || 'sha256:' + createHash('sha256').update(bytes).digest('hex') !== d) return false
  }
  return true
}

function mirrorHost (a: AgentProcess): string {
  const url = (a.ready as unknown as { mirror: string | null }).mirror
  if (url === null || url === undefined) throw new Error(`${a.name} has no mirror in its ready line`)
  return url.slice('http://'.length)
}

const haveSkopeo = existsSync('/usr/bin/skopeo')

t.test('three agents: pull through B after A, upstream down, CLI snippets, taken port', { skip: !haveSkopeo || !existsSync(REGISTRY_BIN) ? 'needs skopeo and docker-registry' : false }, async t => {
  const reg = await startRegistry()
  t.teardown(reg.stop)
  const proxy = await startCountingProxy(reg.url)
  t.teardown(proxy.stop)
  const img = await buildImage({ extraLayerSizes: [3 * 1024 * 1024 + 11, 512 * 1024] })
  await pushImage(reg.url, 'team/app', '1.0', img)

  // The test registry is on loopback, which the mirror fetches from only when allowed.
  const mirrorToml = `[mirror]\nlisten = "127.0.0.1:0"\nupstream = "${proxy.host}"\nallow_private_hosts = ["${proxy.host}"]\n`
  const cluster = await Cluster.create(FAST_TOML)
  t.teardown(async () => { await cluster.destroy() })
  const a = await cluster.add('a', mirrorToml)
  await a.start(['init'], START_MS)
  const seed = a.ready!.node.addrs.find(x => x.includes('/quic-v1'))!
  const b = await cluster.add('b', mirrorToml)
  const c = await cluster.add('c', mirrorToml)
  await Promise.all([b.start(['join', seed, '--token', a.ready!.token], START_MS), c.start(['join', seed, '--token', a.ready!.token], START_MS)])
  const allAlive = await waitFor(async () => (await a.status())?.members.filter(m => m.state === 'alive').length === 3 && (await b.status())?.members.filter(m => m.state === 'alive').length === 3, 30_000)
  t.ok(allAlive >= 0, 'three members alive')
  const out = await mkdtemp(join(tmpdir(), 'bolt-mirror-agents-'))
  t.teardown(async () => { await rm(out, { recursive: true, force: true }) })

  await t.test('A pulls through its mirror, then B: the upstream serves zero blob bytes for B', async t => {
    const ra = await skopeo(['copy', '--src-tls-verify=false', `docker://${mirrorHost(a)}/team/app:1.0`, `dir:${join(out, 'a')}`])
    t.equal(ra.code, 0, ra.code === 0 ? 'skopeo exits 0' : ra.out)
    t.ok(await holds(join(out, 'a'), img))
    t.ok(proxy.blobBytes() >= img.blobBytes, 'A fetched from the upstream')
    proxy.reset()
    const rb = await skopeo(['copy', '--src-tls-verify=false', `docker://${mirrorHost(b)}/team/app:1.0`, `dir:${join(out, 'b')}`])
    t.equal(rb.code, 0, rb.code === 0 ? 'skopeo exits 0' : rb.out)
    t.ok(await holds(join(out, 'b'), img), 'B served every blob with its digest')
    t.equal(proxy.blobBytes(), 0, `no upstream blob byte for B (${JSON.stringify(proxy.requests())})`)
    const inspect = await skopeo(['inspect', '--tls-verify=false', `docker://${mirrorHost(b)}/team/app:1.0`])
    t.equal(inspect.code, 0, inspect.code === 0 ? 'skopeo exits 0' : inspect.out)
    t.equal((JSON.parse(inspect.out) as { Digest: string }).Digest, img.manifestDigest)
    const metrics = await (await fetch(`${b.ready!.api}/metrics`)).text()
    const peers = /bolt_mirror_blob_bytes_total\{source="peers"\} (\d+)/.exec(metrics)
    t.ok(peers !== null && Number(peers[1]) >= img.blobBytes, `B's metrics count the blob bytes from peers (${peers?.[0] ?? 'missing'})`)
    t.match(metrics, /bolt_mirror_blob_bytes_total\{source="upstream"\} 0/)
  })

  await t.test('a Range for the middle of a layer through C returns exactly those bytes', async t => {
    const layer = img.layers[1]!
    const res = await fetch(`http://${mirrorHost(c)}/v2/team/app/blobs/${layer.digest}`, { headers: { range: 'bytes=1048570-2097160' } })
    t.equal(res.status, 206)
    t.ok(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(layer.bytes.subarray(1048570, 2097161))))
  })

  await t.test('a mirror request writes nothing to Raft; a tag the operator put in the cluster is served by C while the upstream is down', async t => {
    const img2 = await buildImage({ extraLayerSizes: [700 * 1024 + 3] })
    await pushImage(reg.url, 'team/app', '2.0', img2)
    const ra = await fetch(`http://${mirrorHost(a)}/v2/team/app/manifests/2.0`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
    t.equal(ra.status, 200)
    t.equal(ra.headers.get('x-bolt-tag-source'), 'upstream', 'A resolved 2.0 upstream')
    t.equal(ra.headers.get('docker-content-digest'), img2.manifestDigest)
    await ra.body?.cancel()
    const pullA = await skopeo(['copy', '--src-tls-verify=false', `docker://${mirrorHost(a)}/team/app:2.0`, `dir:${join(out, 'a-2.0')}`])
    t.equal(pullA.code, 0, pullA.code === 0 ? 'A pulls 2.0 (so its blobs are in the cluster)' : pullA.out)
    // The mirror answers a manifest only after recording its resolution, so
    // a write to Raft would be committed by now: a linearizable read on A sees none.
    const key = `mirror/tags/${proxy.host}/team/app:2.0`
    const kvOnA = await a.cli(['kv', 'get', key])
    t.not(kvOnA.code, 0, `the unauthenticated request wrote nothing to Raft (kv get ${key}: ${kvOnA.stdout.trim()})`)
    // An operator, holding the API token, records the resolution for the cluster.
    const put = await a.cli(['kv', 'put', key, JSON.stringify({ digest: img2.manifestDigest, mediaType: 'application/vnd.oci.image.manifest.v1+json', at: Date.now() })])
    t.equal(put.code, 0, `kv put on A: ${put.stderr.trim()}`)
    const kvOnC = await c.cli(['kv', 'get', key])
    t.equal(kvOnC.code, 0, `kv get ${key} on C: ${kvOnC.stderr.trim()}`)

    proxy.setDown(true)
    t.teardown(() => { proxy.setDown(false) })
    const tag = await fetch(`http://${mirrorHost(c)}/v2/team/app/manifests/2.0`, { method: 'HEAD' })
    t.equal(tag.status, 200, 'C answers a tag it never resolved')
    t.equal(tag.headers.get('x-bolt-tag-source'), 'cluster', 'the header says the cluster\'s resolution answered')
    t.equal(tag.headers.get('docker-content-digest'), img2.manifestDigest)
    const dir = join(out, 'c-2.0')
    const rc = await skopeo(['copy', '--src-tls-verify=false', `docker://${mirrorHost(c)}/team/app:2.0`, `dir:${dir}`])
    t.equal(rc.code, 0, rc.code === 0 ? 'skopeo pulls the tag through C with the upstream down' : rc.out)
    t.ok(await holds(dir, img2), 'C served every blob with its digest (from peers: the upstream is down)')
    const metrics = await (await fetch(`${c.ready!.api}/metrics`)).text()
    t.match(metrics, /bolt_mirror_stale_tags_total [1-9]/, 'C counts the stale tag answers')
    const list = await (await fetch(`http://${mirrorHost(c)}/v2/team/app/tags/list`)).json() as { tags: string[] }
    t.ok(list.tags.includes('2.0'), `C lists the cluster's tags (${list.tags.join(', ')})`)
    const unknown = await fetch(`http://${mirrorHost(c)}/v2/team/app/manifests/never-resolved`, { method: 'HEAD' })
    t.not(unknown.status, 200, 'a tag nobody resolved is not invented')
  })

  await t.test('upstream down: a digest-pinned pull works through every agent', async t => {
    proxy.setDown(true)
    t.teardown(() => { proxy.setDown(false) })
    for (const x of [a, b, c]) {
      const dir = join(out, `down-${x.name}`)
      const r = await skopeo(['copy', '--src-tls-verify=false', `docker://${mirrorHost(x)}/team/app@${img.manifestDigest}`, `dir:${dir}`])
      t.equal(r.code, 0, r.code === 0 ? `${x.name}: skopeo exits 0` : `${x.name}: ${r.out}`)
      t.ok(await holds(dir, img), `${x.name} served the image`)
    }
    const tag = await fetch(`http://${mirrorHost(b)}/v2/team/app/manifests/1.0`, { method: 'HEAD' })
    t.equal(tag.headers.get('x-bolt-tag-source'), 'node', 'a tag B resolved before comes from B\'s own resolution (the mirror keeps it on its node)')
  })

  await t.test('bolt-agent mirror config prints snippets for this node', async t => {
    const ctd = await b.cli(['mirror', 'config', 'containerd'])
    t.equal(ctd.code, 0, ctd.stderr)
    t.match(ctd.stdout, `[host."http://${mirrorHost(b)}"]`)
    t.match(ctd.stdout, `server = "https://${proxy.host}"`)
    const docker = await b.cli(['mirror', 'config', 'docker'])
    t.match(docker.stdout, `"http://${mirrorHost(b)}"`)
    const podman = await b.cli(['mirror', 'config', 'podman'])
    t.match(podman.stdout, `location = "${mirrorHost(b)}"`)
    const bad = await b.cli(['mirror', 'config', 'rkt'])
    t.not(bad.code, 0)
  })

  await t.test('an agent whose mirror port is taken still starts, without the mirror', async t => {
    const blocker = createServer()
    await new Promise<void>(resolve => blocker.listen(0, '127.0.0.1', resolve))
    t.teardown(async () => { await new Promise<void>(resolve => blocker.close(() => resolve())) })
    const port = (blocker.address() as { port: number }).port
    const d = await cluster.add('d', `[mirror]\nlisten = "127.0.0.1:${port}"\n`)
    const ready = await d.start(['join', seed, '--token', a.ready!.token], START_MS)
    t.equal((ready as unknown as { mirror: string | null }).mirror, null)
    t.ok(d.stderrTail.some(l => l.includes('registry mirror not started')), 'a warning is logged')
    const r = await d.cli(['mirror', 'config', 'docker'])
    t.not(r.code, 0, 'the snippet command says the mirror is not running')
  })
})
