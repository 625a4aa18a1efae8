// podman push into the cluster registry, interrupted mid-blob and pushed
// again: real podman (its own storage root), the registry behind a proxy
// that paces request bodies so the push can be killed while a layer is on
// the wire. The second push completes, the image pulls back with its
// digests, and the abandoned upload is the only one left (dropped when idle).
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises'
import { createServer, request as httpRequest, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { waitFor } from '../helpers/harness.js'
import { buildImage, writeImageLayout } from '../helpers/registry.js'
import { CRED, setup } from '../helpers/push-registry.js'

async function exec (cmd: string, args: string[], timeout = 120_000): Promise<{ code: number, out: string }> {
  return await new Promise(resolve => {
    execFile(cmd, args, { timeout, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? 1), out: stdout + stderr })
    })
  })
}

/** A proxy to `target` that passes request bodies at `bytesPerSecond`. */
async function slowUploadProxy (target: URL, bytesPerSecond: number): Promise<{ host: string, stop: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host }, agent: false }, upRes => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers)
      upRes.pipe(res)
    })
    up.on('error', () => { res.destroy() })
    res.on('close', () => { if (!res.writableFinished) up.destroy() })
    req.on('data', (chunk: Buffer) => {
      req.pause()
      up.write(chunk)
      setTimeout(() => req.resume(), (chunk.length / bytesPerSecond) * 1000)
    })
    req.on('end', () => up.end())
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address() as { port: number }
  return {
    host: `127.0.0.1:${addr.port}`,
    stop: async () => { server.closeAllConnections(); await new Promise(resolve => server.close(resolve)) }
  }
}

t.test('podman push killed mid-layer, then pushed again: complete and verified', { skip: existsSync('/usr/bin/podman') ? (process.getuid?.() === 0 ? false : 'needs root') : 'needs podman' }, async t => {
  const { base, host, store, dir } = await setup(t)
  // A lower-case path: podman names an image pulled from oci:DIR after DIR.
  const work = join(tmpdir(), `bolt-podman-push-${randomBytes(4).toString('hex')}`)
  await mkdir(work)
  const args = ['--root', join(work, 'root'), '--runroot', join(work, 'run'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'none']
  t.teardown(async () => { await exec('podman', [...args, 'system', 'reset', '--force'], 60_000); await rm(work, { recursive: true, force: true }) })
  const img = await buildImage({ extraLayerSizes: [12 * 1024 * 1024, 64 * 1024] })
  await writeImageLayout(join(work, 'layout'), 'v1', img)
  const loaded = await exec('podman', [...args, 'pull', `oci:${join(work, 'layout')}:v1`])
  t.equal(loaded.code, 0, loaded.out)
  if (loaded.code !== 0) return
  const id = /^[0-9a-f]{64}$/m.exec(loaded.out)?.[0] ?? 'no-id'

  const proxy = await slowUploadProxy(new URL(base), 2 * 1024 * 1024)
  t.teardown(proxy.stop)
  // Upload bytes live in the store's uploads/ (beside a .json record of each), created at the first upload.
  const uploadFiles = async (): Promise<Array<{ name: string, size: number }>> => await Promise.all((await readdir(join(dir, 'store', 'uploads')).catch(() => [])).filter(n => n.startsWith('upload-') && !n.endsWith('.json')).map(async name => ({ name, size: (await stat(join(dir, 'store', 'uploads', name))).size })))
  const first = spawn('podman', [...args, 'push', '--tls-verify=false', '--creds', `bolt:${CRED}`, id, `docker://${proxy.host}/team/big:v1`], { stdio: ['ignore', 'ignore', 'pipe'] })
  let firstErr = ''
  first.stderr?.on('data', (d: Buffer) => { firstErr = (firstErr + d.toString()).slice(-2000) })
  t.teardown(() => { if (first.exitCode === null) first.kill('SIGKILL') })
  const midway = await waitFor(async () => (await uploadFiles()).some(f => f.size > 2 * 1024 * 1024), 60_000, 100)
  t.ok(midway >= 0, `the big layer is partly uploaded (${midway < 0 ? firstErr : 'ok'})`)
  if (midway < 0) return
  first.kill('SIGKILL')
  await new Promise(resolve => first.once('exit', resolve))
  const left = await uploadFiles()
  t.ok(left.length >= 1 && left.every(f => f.size < img.layers[1]!.bytes.length + 1024 * 1024), `the push died mid-upload (${left.map(f => f.size).join(', ')} bytes held)`)
  t.equal((await fetch(`${base}/v2/team/big/tags/list`, { headers: { authorization: `Bearer ${CRED}` } })).status, 404, 'nothing tagged')

  const again = await exec('podman', [...args, 'push', '--tls-verify=false', '--creds', `bolt:${CRED}`, id, `docker://${host}/team/big:v1`])
  t.equal(again.code, 0, again.code === 0 ? 'the second push completes' : again.out)
  const out = join(work, 'pulled')
  const back = await exec('skopeo', ['copy', '--src-tls-verify=false', `docker://${host}/team/big:v1`, `dir:${out}`])
  t.equal(back.code, 0, back.out)
  const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { layers: Array<{ digest: string, size: number }> }
  for (const l of manifest.layers) {
    t.equal('sha256:' + createHash('sha256').update(await readFile(join(out, l.digest.slice(7)))).digest('hex'), l.digest, `layer ${l.digest.slice(7, 19)} verified`)
    t.ok(store.hasSync(l.digest), 'and held by the agent')
  }
  t.ok(manifest.layers.some(l => l.size > 12 * 1024 * 1024), 'including the layer whose first upload was cut')
})
