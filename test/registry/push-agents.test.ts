// Cluster images in real agents, with no registry server anywhere: skopeo
// pushes a multi-layer image to agent A (K = 2: A and one other member hold
// its blobs before the push returns); A is killed with SIGKILL at once; B runs
// the image as bolt.local/team/app:v1, and podman and containerd's ctr pull
// it through C, digests verified.
import t from 'tap'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, waitFor, untilStopped, type AgentProcess } from '../helpers/harness.js'
import { RAFT_TOML } from '../../scenarios/_raft.js'
import { buildImage, writeImageLayout } from '../helpers/registry.js'

const START_MS = 120_000

async function exec (cmd: string, args: string[], timeout = 120_000): Promise<{ code: number, out: string }> {
  return await new Promise(resolve => {
    execFile(cmd, args, { timeout, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? 1), out: stdout + stderr })
    })
  })
}

/** Bytes of `digests` in an agent's blob store, counted on disk. */
async function bytesOnDisk (a: AgentProcess, digests: string[]): Promise<number> {
  let n = 0
  for (const d of digests) n += (await stat(join(a.dataDir, 'blobs', 'blobs', 'sha256', d.slice(7))).catch(() => undefined))?.size ?? 0
  return n
}

function registryHost (a: AgentProcess): string {
  const url = (a.ready as unknown as { mirror: string | null }).mirror
  if (url === null || url === undefined) throw new Error(`${a.name} has no registry endpoint in its ready line`)
  return url.slice('http://'.length)
}

const tools = ['/usr/bin/skopeo', '/usr/bin/podman', '/usr/bin/containerd', '/usr/bin/ctr', '/usr/bin/runc']
const missing = tools.filter(p => !existsSync(p))

t.test('push to A, kill -9 A, run on B, podman and ctr pull through C', { skip: missing.length > 0 ? `needs ${missing.join(', ')}` : process.getuid?.() !== 0 ? 'needs root' : false }, async t => {
  const bridge = `bp${randomBytes(3).toString('hex')}`
  const toml = `[mirror]\nlisten = "127.0.0.1:0"\n[registry]\nreplicas = 2\ngc_grace_s = 3\n[network]\nbridge = "${bridge}"\n`
  const cluster = await Cluster.create(RAFT_TOML(3))
  t.teardown(async () => { await cluster.destroy() })
  const a = await cluster.add('a', toml)
  await a.start(['init'], START_MS)
  const seed = a.ready!.node.addrs.find(x => x.includes('/quic-v1'))!
  const b = await cluster.add('b', toml)
  const c = await cluster.add('c', toml)
  await Promise.all([b.start(['join', seed, '--token', a.ready!.token], START_MS), c.start(['join', seed, '--token', a.ready!.token], START_MS)])
  const alive = await waitFor(async () => {
    const s = await a.status()
    return s?.members.filter(m => m.state === 'alive' && m.role === 'server').length === 3
  }, 60_000, 500)
  t.ok(alive >= 0, 'three voters alive')

  const work = await mkdtemp(join(tmpdir(), 'bolt-push-agents-'))
  t.teardown(async () => { await rm(work, { recursive: true, force: true }) })
  const img = await buildImage({ extraLayerSizes: [1536 * 1024 + 5, 400 * 1024] })
  await writeImageLayout(join(work, 'layout'), 'v1', img)

  const tok = await a.cli(['registry', 'token', '--json'])
  t.equal(tok.code, 0, tok.stderr)
  const cred = JSON.parse(tok.stdout) as { registry: string, username: string, password: string }
  t.equal(cred.registry, registryHost(a), 'the token names A\'s registry endpoint')

  const noCred = await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${join(work, 'layout')}:v1`, `docker://${registryHost(a)}/team/app:v1`])
  t.not(noCred.code, 0, 'a push without the credential fails')
  const pushed = await exec('skopeo', ['copy', '--dest-tls-verify=false', '--preserve-digests', '--dest-creds', `${cred.username}:${cred.password}`, `oci:${join(work, 'layout')}:v1`, `docker://${registryHost(a)}/team/app:v1`])
  t.equal(pushed.code, 0, pushed.code === 0 ? 'skopeo pushed to A' : pushed.out)
  // SIGKILL right after the push returned: what it acknowledged must survive.
  await a.kill9()

  const listed = await b.cli(['images', '--cluster', '--json'])
  t.equal(listed.code, 0, listed.stderr)
  const rows = JSON.parse(listed.stdout) as Array<{ ref: string, digest: string, size: number, replicas: number, holders: string[] }>
  t.match(rows, [{ ref: 'bolt.local/team/app:v1', digest: img.manifestDigest }], 'the catalog on B lists the image')
  // Replica counts are current: A is gone, the other member that took the blobs before the push returned still holds them.
  t.ok((rows[0]?.replicas ?? 0) >= 1 && rows[0]?.holders.includes(a.ready!.node.id) === false, `held by a live member, not by A (${JSON.stringify(rows[0]?.holders)})`)
  t.ok((rows[0]?.size ?? 0) >= img.blobBytes, 'with its size')

  const aDead = await waitFor(async () => (await b.status())?.members.find(m => m.id === a.ready!.node.id)?.state === 'dead', 60_000, 500)
  t.ok(aDead >= 0, 'B sees A dead')
  const run = await b.cli(['run', 'bolt.local/team/app:v1', '--network', 'none', '--name', 'pushed', '--memory', '32M', '--', '/bin/sh', '-c', `echo pushed-image-runs; ${untilStopped()}`], 60_000)
  t.equal(run.code, 0, `run on B: ${run.stderr.trim()}`)
  let logs = ''
  const ran = await waitFor(async () => { const l = await b.cli(['logs', 'pushed']); logs = l.stdout + l.stderr; return l.stdout.includes('pushed-image-runs') }, 120_000, 1000)
  t.ok(ran >= 0, `the capsule ran the pushed image (${logs.trim().slice(0, 200)})`)
  if (ran < 0) for (const x of [b, c]) t.comment(x.name, x.stderrTail.slice(-30).join('\n'))

  await t.test('podman pulls through C', async t => {
    const root = join(work, 'podman')
    const args = ['--root', join(root, 'root'), '--runroot', join(root, 'run'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'none']
    t.teardown(async () => { await exec('podman', [...args, 'system', 'reset', '--force'], 60_000); await rm(root, { recursive: true, force: true }) })
    const pull = await exec('podman', [...args, 'pull', '--tls-verify=false', `${registryHost(c)}/team/app:v1`])
    t.equal(pull.code, 0, pull.out)
    const digest = await exec('podman', [...args, 'image', 'inspect', '--format', '{{.Digest}}', `${registryHost(c)}/team/app:v1`])
    t.equal(digest.out.trim(), img.manifestDigest, 'podman has the pushed manifest digest')
  })

  await t.test('ctr pulls through C (containerd on its own root, state and socket)', async t => {
    const root = join(work, 'containerd')
    const sock = join(root, 'containerd.sock')
    const config = join(root, 'config.toml')
    await exec('mkdir', ['-p', root])
    await writeFile(config, `version = 2\nroot = "${join(root, 'root')}"\nstate = "${join(root, 'state')}"\ndisabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]\n[grpc]\n  address = "${sock}"\n[ttrpc]\n  address = "${sock}.ttrpc"\n[debug]\n  address = ""\n[metrics]\n  address = ""\n`)
    const proc: ChildProcess = spawn('containerd', ['--config', config], { stdio: ['ignore', 'ignore', 'pipe'] })
    let log = ''
    proc.stderr?.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-4000) })
    t.teardown(async () => {
      if (proc.exitCode === null) {
        const gone = new Promise(resolve => proc.once('exit', resolve))
        proc.kill('SIGTERM')
        await Promise.race([gone, new Promise(resolve => { setTimeout(resolve, 10_000).unref() })])
        if (proc.exitCode === null) proc.kill('SIGKILL')
      }
      await exec('umount', ['-R', join(root, 'root')], 10_000)
      await rm(root, { recursive: true, force: true })
    })
    const up = await waitFor(async () => (await exec('ctr', ['--address', sock, 'version'], 10_000)).code === 0, 30_000, 300)
    t.ok(up >= 0, `containerd answers (${up < 0 ? log : 'ok'})`)
    const pull = await exec('ctr', ['--address', sock, 'images', 'pull', '--plain-http', `${registryHost(c)}/team/app:v1`])
    t.equal(pull.code, 0, pull.out)
    const ls = await exec('ctr', ['--address', sock, 'images', 'ls'])
    t.match(ls.out, img.manifestDigest, 'ctr lists the pushed manifest digest')
    const check = await exec('ctr', ['--address', sock, 'images', 'check'])
    t.match(check.out, /complete/, `content verified (${check.out.trim().slice(0, 200)})`)
  })

  await t.test('deleting the only tag frees the blobs on every live member after the grace period', async t => {
    // A capsule keeps the image it runs from GC (cluster-images.test.ts): none may use it here.
    t.equal((await b.cli(['rm', 'pushed'])).code, 0, 'the capsule running the image is removed')
    const digests = [img.manifestDigest, img.configDigest, ...img.layers.map(l => l.digest)]
    const before = [await bytesOnDisk(b, digests), await bytesOnDisk(c, digests)]
    t.ok(before.some(n => n >= img.blobBytes), `the replica holder among B and C holds the image (${before.join(', ')} bytes)`)
    const noCred = await fetch(`http://${registryHost(b)}/v2/team/app/manifests/v1`, { method: 'DELETE' })
    t.equal(noCred.status, 401, 'a delete without the credential is refused')
    const del = await fetch(`http://${registryHost(b)}/v2/team/app/manifests/v1`, { method: 'DELETE', headers: { authorization: `Bearer ${cred.password}` } })
    t.equal(del.status, 202, 'the tag is deleted through B')
    const freed = await waitFor(async () => (await bytesOnDisk(b, digests)) + (await bytesOnDisk(c, digests)) === 0, 60_000, 500)
    t.ok(freed >= 0, `no byte of the image is left on B or C (${await bytesOnDisk(b, digests)}, ${await bytesOnDisk(c, digests)})`)
    const listed = await c.cli(['images', '--cluster', '--json'])
    t.same(JSON.parse(listed.stdout), [], 'the catalog is empty')
  })
})
