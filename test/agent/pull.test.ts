// `bolt-agent pull` through real agents: the first pull comes from the
// registry with digests verified, the second agent's from its peer.
import t from 'tap'
import { existsSync } from 'node:fs'
import { Cluster } from '../helpers/harness.js'
import { RAFT_TOML, formVoters } from '../../scenarios/_raft.js'
import { buildImage, pushImage, startCountingProxy, startRegistry, REGISTRY_BIN } from '../helpers/registry.js'

t.test('pull from the registry, then from a peer with zero registry blob bytes', { skip: existsSync(REGISTRY_BIN) ? false : 'needs docker-registry (.ci/run installs it)' }, async t => {
  const registry = await startRegistry()
  t.teardown(async () => { await registry.stop() })
  const img = await buildImage({ extraLayerSizes: [6 * 1024 * 1024] })
  await pushImage(registry.url, 'demo/big', '1', img)
  const proxy = await startCountingProxy(registry.url)
  t.teardown(async () => { await proxy.stop() })
  const ref = `${proxy.host}/demo/big:1`
  const cluster = await Cluster.create(RAFT_TOML(2))
  t.teardown(async () => { await cluster.destroy() })
  const [a, b] = await formVoters(cluster, 2)

  const first = await a!.cli(['pull', '--json', ref], 120_000)
  t.equal(first.code, 0, `first pull exits 0 ${first.stderr.trim()}`)
  const events = first.stdout.trim().split('\n').map(l => JSON.parse(l) as { event: string, digest?: string, bytesFromRegistry?: number })
  t.ok(events.some(e => e.event === 'progress'), 'JSON progress lines')
  const done = events.find(e => e.event === 'done')
  t.equal(done?.digest, img.manifestDigest, 'the manifest digest verified')
  t.ok(proxy.blobBytes() >= img.blobBytes, 'the first pull came from the registry')
  const afterFirst = proxy.blobBytes()

  const second = await b!.cli(['pull', '--json', ref], 120_000)
  t.equal(second.code, 0, `second pull exits 0 ${second.stderr.trim()}`)
  const done2 = second.stdout.trim().split('\n').map(l => JSON.parse(l) as { event: string, bytesFromPeers?: number }).find(e => e.event === 'done')
  t.equal(proxy.blobBytes() - afterFirst, 0, 'zero blob bytes from the registry for the second agent')
  t.ok((done2?.bytesFromPeers ?? 0) > 0, 'its bytes came from the peer')
  const images = await b!.cli(['images', '--json'])
  t.match(images.stdout, 'demo/big', 'images lists it')
  // Where each image's bytes came from, as the dashboard's Images page reads it (/v1/images).
  type Row = { ref: string, bytesFromPeers: number | null, bytesFromRegistry: number | null }
  const rowOf = (stdout: string): Row | undefined => (JSON.parse(stdout) as Row[]).find(r => r.ref === ref)
  const onB = rowOf(images.stdout)
  t.ok((onB?.bytesFromPeers ?? 0) > 0, `b's image: bytes from peers (${JSON.stringify(onB)})`)
  t.equal(onB?.bytesFromRegistry, 0, 'none from the registry')
  const onA = rowOf((await a!.cli(['images', '--json'])).stdout)
  t.ok((onA?.bytesFromRegistry ?? 0) >= img.blobBytes, `a's image: its bytes from the registry (${JSON.stringify(onA)})`)
})
