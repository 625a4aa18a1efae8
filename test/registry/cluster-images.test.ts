// Cluster images used like any other in real agents (no registry server
// anywhere): `bolt-agent pull bolt.local/…` fetches a pushed image from its
// holder with the pull's usual progress and JSON, `images` lists it and
// `images --cluster` counts the puller as a holder now; a
// capsule started from a cluster image keeps it from GC on every member
// after its only tag is deleted (a second, unused image pushed and deleted
// at the same time is freed: GC has passed the grace), so `restart` still
// runs it; once the capsule is removed, the image is freed too.
import t from 'tap'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, waitFor, untilStopped, type AgentProcess } from '../helpers/harness.js'
import { RAFT_TOML } from '../../scenarios/_raft.js'
import { buildImage, writeImageLayout, type BuiltImage } from '../helpers/registry.js'

const START_MS = 120_000

async function exec (cmd: string, args: string[], timeout = 120_000): Promise<{ code: number, out: string }> {
  return await new Promise(resolve => {
    execFile(cmd, args, { timeout, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? 1), out: stdout + stderr })
    })
  })
}

/** How many of `digests` an agent's blob store holds on disk. */
async function held (a: AgentProcess, digests: string[]): Promise<number> {
  let n = 0
  for (const d of digests) if (await stat(join(a.dataDir, 'blobs', 'blobs', 'sha256', d.slice(7))).catch(() => undefined) !== undefined) n++
  return n
}

function registryHost (a: AgentProcess): string {
  const url = (a.ready as unknown as { mirror: string | null }).mirror
  if (url === null || url === undefined) throw new Error(`${a.name} has no registry endpoint in its ready line`)
  return url.slice('http://'.length)
}

function digestsOf (img: BuiltImage): string[] { return [img.manifestDigest, img.configDigest, ...img.layers.map(l => l.digest)] }

interface Inst { state: string, generation: number }
async function instance (a: AgentProcess, name: string): Promise<Inst | undefined> {
  const r = await a.cli(['--json', 'inspect', name], 15_000)
  return r.code === 0 ? (JSON.parse(r.stdout) as { instances: Inst[] }).instances[0] : undefined
}

const tools = ['/usr/bin/skopeo', '/usr/bin/runc']
const missing = tools.filter(p => !existsSync(p))

t.test('pull of a cluster image; GC keeps an image a capsule uses', { skip: missing.length > 0 ? `needs ${missing.join(', ')}` : process.getuid?.() !== 0 ? 'needs root' : false }, async t => {
  const bridge = `bc${randomBytes(3).toString('hex')}`
  // K = 1: only A (pushed to) holds the blobs, so B's pull comes from its peer.
  const toml = `[mirror]\nlisten = "127.0.0.1:0"\n[registry]\nreplicas = 1\ngc_grace_s = 2\n[network]\nbridge = "${bridge}"\n`
  const cluster = await Cluster.create(RAFT_TOML(2))
  t.teardown(async () => { await cluster.destroy() })
  const a = await cluster.add('a', toml)
  await a.start(['init'], START_MS)
  const seed = a.ready!.node.addrs.find(x => x.includes('/quic-v1'))!
  const b = await cluster.add('b', toml)
  await b.start(['join', seed, '--token', a.ready!.token], START_MS)
  const alive = await waitFor(async () => (await a.status())?.members.filter(m => m.state === 'alive' && m.role === 'server').length === 2, 60_000, 500)
  t.ok(alive >= 0, 'two voters alive')

  const work = await mkdtemp(join(tmpdir(), 'bolt-cluster-images-'))
  t.teardown(async () => { await rm(work, { recursive: true, force: true }) })
  const app = await buildImage({ extraLayerSizes: [700 * 1024] })
  const other = await buildImage({ extraLayerSizes: [300 * 1024] })
  await writeImageLayout(join(work, 'app'), 'v1', app)
  await writeImageLayout(join(work, 'other'), 'v1', other)
  const tok = await a.cli(['registry', 'token', '--json'])
  t.equal(tok.code, 0, tok.stderr)
  const cred = JSON.parse(tok.stdout) as { username: string, password: string }
  for (const [dir, repo] of [['app', 'team/app'], ['other', 'team/other']]) {
    const pushed = await exec('skopeo', ['copy', '--dest-tls-verify=false', '--preserve-digests', '--dest-creds', `${cred.username}:${cred.password}`, `oci:${join(work, dir as string)}:v1`, `docker://${registryHost(a)}/${repo as string}:v1`])
    t.equal(pushed.code, 0, pushed.code === 0 ? `skopeo pushed ${repo as string}` : pushed.out)
  }

  await t.test('pull bolt.local/… on B comes from its peer, with progress, and images lists it', async t => {
    const pulled = await b.cli(['pull', '--json', 'bolt.local/team/other:v1'], 120_000)
    t.equal(pulled.code, 0, `pull exits 0 (${pulled.stderr.trim()})`)
    const events = pulled.stdout.trim().split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as { event: string, ref?: string, digest?: string, size?: number, bytesFromPeers?: number, bytesFromRegistry?: number })
    t.ok(events.some(e => e.event === 'progress'), 'JSON progress lines')
    t.match(events.find(e => e.event === 'done'), { ref: 'bolt.local/team/other:v1', digest: other.manifestDigest, size: other.blobBytes, bytesFromPeers: other.blobBytes, bytesFromRegistry: 0 }, 'every blob byte came from the peer, none from a registry')
    t.equal(await held(b, digestsOf(other)), digestsOf(other).length, 'B holds the manifest and every blob')
    const listed = await b.cli(['images', '--json'])
    t.match(JSON.parse(listed.stdout), [{ ref: 'bolt.local/team/other:v1', digest: other.manifestDigest, size: other.blobBytes }], 'images lists it')
    const cat = await a.cli(['images', '--cluster', '--json'])
    t.equal(cat.code, 0, cat.stderr)
    const rows = JSON.parse(cat.stdout) as Array<{ ref: string, replicas: number, holders: string[] }>
    t.match(rows.find(r => r.ref === 'bolt.local/team/other:v1'), { replicas: 2 }, 'images --cluster counts B, which pulled it, as a holder now')
    t.same(rows.find(r => r.ref === 'bolt.local/team/other:v1')?.holders.sort(), [a.ready!.node.id, b.ready!.node.id].sort())
    t.match(rows.find(r => r.ref === 'bolt.local/team/app:v1'), { replicas: 1, holders: [a.ready!.node.id] }, 'the image only A holds: 1')
    const human = await b.cli(['pull', 'bolt.local/team/other:v1'], 60_000)
    t.equal(human.code, 0, 'a second pull exits 0')
    t.match(human.stdout, `bolt.local/team/other:v1 ${other.manifestDigest}`, 'and prints the ref and digest')
    const unknown = await b.cli(['pull', 'bolt.local/team/nope:v1'], 60_000)
    t.equal(unknown.code, 1, 'pull of an image the cluster does not have: exit 1')
    t.match(unknown.stderr, /bolt\.local\/team\/nope:v1 is not in the cluster/, `says so (${unknown.stderr.trim()})`)
  })

  await t.test('deleting the tag of a running image: GC keeps it, restart runs it; removing the capsule frees it', async t => {
    const run = await b.cli(['run', 'bolt.local/team/app:v1', '--network', 'none', '--name', 'app', '--memory', '32M', '--', '/bin/sh', '-c', `echo cluster-app-runs; ${untilStopped()}`], 60_000)
    t.equal(run.code, 0, `run: ${run.stderr.trim()}`)
    t.ok(await waitFor(async () => (await instance(b, 'app'))?.state === 'running', 120_000, 500) >= 0, 'app runs')
    const sharedBase = app.layers[0]!.digest
    const appOnly = digestsOf(app).filter(d => d !== sharedBase)
    const otherOnly = digestsOf(other).filter(d => d !== sharedBase)
    t.equal(await held(a, appOnly), appOnly.length, 'A holds app')
    for (const repo of ['team/app', 'team/other']) {
      const del = await fetch(`http://${registryHost(a)}/v2/${repo}/manifests/v1`, { method: 'DELETE', headers: { authorization: `Bearer ${cred.password}` } })
      t.equal(del.status, 202, `the only tag of ${repo} is deleted`)
    }
    // The image no capsule uses is freed on A: GC has passed the grace there.
    t.ok(await waitFor(async () => await held(a, otherOnly) === 0, 60_000, 500) >= 0, 'the unused image is freed on A')
    t.equal(await held(a, appOnly), appOnly.length, 'the image the capsule uses is kept on A')
    const rs = await b.cli(['restart', 'app'])
    t.equal(rs.code, 0, `restart exits 0 (${rs.stderr.trim()})`)
    let last: Inst | undefined
    const again = await waitFor(async () => { last = await instance(b, 'app'); return last?.state === 'running' && last.generation === 2 }, 120_000, 500)
    t.ok(again >= 0, `app runs again from the untagged image (${JSON.stringify(last)})`)
    if (again < 0) for (const x of [a, b]) t.comment(x.name, x.stderrTail.slice(-30).join('\n'))

    t.equal((await b.cli(['rm', 'app'])).code, 0, 'rm app')
    t.ok(await waitFor(async () => await held(a, appOnly) === 0, 60_000, 500) >= 0, 'once no capsule uses it, the image is freed on A')
  })
})
