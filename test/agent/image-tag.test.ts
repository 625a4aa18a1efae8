// A capsule's image tag is resolved again at every (re)start (issue 22): a tag
// moved in the registry is what the next start runs, without an agent
// restart; with the registry gone, starts go on with the image the tag last
// resolved to. Real agent, real runc, real docker-registry.
import t from 'tap'
import { existsSync } from 'node:fs'
import { Cluster, waitFor } from '../helpers/harness.js'
import { apiOf, kv } from '../../scenarios/_raft.js'
import { buildImage, pushImage, startRegistry, REGISTRY_BIN } from '../helpers/registry.js'

const haveRunc = existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc')
const isRoot = process.getuid?.() === 0

interface Ps { name: string, capsule: string, state: string, reason: string | null, restarts: number }

t.test('a moved tag runs at the next restart; an unreachable registry falls back to the last image', { skip: !haveRunc || !isRoot || !existsSync(REGISTRY_BIN) ? 'needs root, runc and docker-registry' : false }, async t => {
  const registry = await startRegistry()
  let registryUp = true
  t.teardown(async () => { if (registryUp) await registry.stop() })
  // v1 has busybox alone; v2 adds a layer with /data/layer0, which the capsule looks for.
  await pushImage(registry.url, 'moving/busybox', 'latest', await buildImage())
  const image = `${registry.host}/moving/busybox:latest`

  const cluster = await Cluster.create()
  t.teardown(async () => { await cluster.destroy() })
  const a = await cluster.add('a0')
  await a.start(['init'], 120_000)
  const api = await apiOf(a)
  const created = await kv(api, 'POST', '/v1/capsules', {
    name: 'mover',
    image,
    args: ['/bin/sh', '-c', 'if [ -e /data/layer0 ]; then echo image-v2; else echo image-v1; fi; sleep 1; exit 3'],
    restart: { policy: 'on-failure', maxRetries: 1000, backoffMs: 0 },
    resources: { cpu: 0.05, memoryBytes: 16 * 1024 * 1024 }
  }, 30_000)
  t.ok(created.status >= 200 && created.status < 300, `capsule created (${JSON.stringify(created.body)})`)
  const logs = async (): Promise<string> => (await a.cli(['logs', 'mover'], 20_000)).stdout
  t.ok(await waitFor(async () => (await logs()).includes('image-v1'), 120_000, 500) >= 0, 'the first start runs the image the tag names (v1)')

  await pushImage(registry.url, 'moving/busybox', 'latest', await buildImage({ extraLayerSizes: [64] }))
  const moved = await waitFor(async () => (await logs()).includes('image-v2'), 120_000, 500)
  t.ok(moved >= 0, 'a restart after the tag moved runs the new image (v2), with no agent restart')

  const ps = async (): Promise<Ps | undefined> => {
    const r = await a.cli(['ps', '--json'], 20_000)
    return r.code === 0 ? (JSON.parse(r.stdout) as Ps[]).find(x => x.capsule === 'mover') : undefined
  }
  await registry.stop()
  registryUp = false
  const before = (await ps())?.restarts ?? 0
  let last: Ps | undefined
  const restarted = await waitFor(async () => { last = await ps(); return last !== undefined && last.restarts >= before + 2 }, 120_000, 500)
  t.ok(restarted >= 0, `with the registry gone it keeps restarting on the last image (${JSON.stringify(last)})`)
  t.not(last?.state, 'failed', 'and never fails its pull')
  // Between runs the instance re-resolves its tag (here: fails to, and falls
  // back), and its logs may be empty while it does; the next run prints again.
  let lastImage: string | undefined
  await waitFor(async () => { lastImage = (await logs()).split('\n').filter(l => l.startsWith('image-')).pop(); return lastImage !== undefined }, 60_000, 500)
  t.equal(lastImage, 'image-v2', 'the image the tag last resolved to')
  await kv(api, 'DELETE', '/v1/capsules/mover', undefined, 30_000)
})
