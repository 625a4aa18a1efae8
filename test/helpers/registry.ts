// Test helpers around a real registry: start Debian's `docker-registry`
// (CNCF distribution 2.8) on a free loopback port with a temp storage dir,
// build small OCI images (busybox-static plus generated layers) without
// Docker, push them, and put a counting / throttling HTTP proxy in front of
// the registry to measure its blob egress.
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createServer, request as httpRequest, type Server } from 'node:http'
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises'
import { createServer as createNetServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'

export const REGISTRY_BIN = '/usr/bin/docker-registry'
export const BUSYBOX_BIN = '/bin/busybox'

export interface RunningRegistry {
  /** `127.0.0.1:PORT`, usable as an image reference host. */
  host: string
  url: string
  dir: string
  stop: () => Promise<void>
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createNetServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      s.close(() => resolve(port))
    })
  })
}

/** Starts `docker-registry serve` on a free 127.0.0.1 port; resolves when `/v2/` answers. */
export async function startRegistry (): Promise<RunningRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-registry-'))
  const port = await freePort()
  const config = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    ''
  ].join('\n')
  await writeFile(join(dir, 'config.yml'), config)
  const child: ChildProcess = spawn(REGISTRY_BIN, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (b: Buffer) => { stderr = (stderr + b.toString()).slice(-4000) })
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 15_000
  for (;;) {
    try {
      const r = await fetch(`${url}/v2/`)
      await r.body?.cancel()
      if (r.ok) break
    } catch { /* not up yet */ }
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`docker-registry did not start: ${stderr}`)
    }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return {
    host: `127.0.0.1:${port}`,
    url,
    dir,
    stop: async () => {
      if (child.exitCode === null) { child.kill('SIGTERM'); await exited }
      await rm(dir, { recursive: true, force: true })
    }
  }
}

// ---- images -----------------------------------------------------------------

interface TarEntry { path: string, type: 'file' | 'dir' | 'symlink', data?: Uint8Array, target?: string, mode?: number }

/** A minimal deterministic ustar writer (mtime 0, uid/gid 0). */
export function tar (entries: TarEntry[]): Uint8Array {
  const blocks: Uint8Array[] = []
  for (const e of entries) {
    const h = new Uint8Array(512)
    const put = (s: string, off: number, len: number): void => { h.set(Buffer.from(s, 'utf8').subarray(0, len), off) }
    const oct = (n: number, len: number): string => n.toString(8).padStart(len - 1, '0') + '\0'
    const size = e.type === 'file' ? e.data?.length ?? 0 : 0
    put(e.path, 0, 100)
    put(oct(e.mode ?? (e.type === 'dir' ? 0o755 : 0o755), 8), 100, 8)
    put(oct(0, 8), 108, 8)
    put(oct(0, 8), 116, 8)
    put(oct(size, 12), 124, 12)
    put(oct(0, 12), 136, 12)
    put('        ', 148, 8)
    put(e.type === 'file' ? '0' : e.type === 'dir' ? '5' : '2', 156, 1)
    if (e.target !== undefined) put(e.target, 157, 100)
    put('ustar\0', 257, 6)
    put('00', 263, 2)
    let sum = 0
    for (const b of h) sum += b
    put(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8)
    blocks.push(h)
    if (size > 0 && e.data !== undefined) {
      blocks.push(e.data)
      const pad = (512 - (size % 512)) % 512
      if (pad > 0) blocks.push(new Uint8Array(pad))
    }
  }
  blocks.push(new Uint8Array(1024))
  return new Uint8Array(Buffer.concat(blocks))
}

function digestOf (b: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex')
}

export interface BuiltImage {
  manifest: Uint8Array
  manifestDigest: string
  config: Uint8Array
  configDigest: string
  layers: Array<{ digest: string, bytes: Uint8Array }>
  /** Sum of config and layer sizes: the blob bytes a pull moves. */
  blobBytes: number
}

/**
 * An OCI image: busybox-static as /bin/busybox and /bin/sh, plus one layer per
 * entry of `extraLayerSizes` holding that many random bytes in /data/layerN.
 */
/**
 * `gzip`: layers compressed as in real images (`tar+gzip`). Clients that
 * write an OCI layout (skopeo to `oci:`) compress uncompressed layers
 * themselves, which would put gzip's CPU into a benchmark's client side.
 */
export async function buildImage (opts: { extraLayerSizes?: number[], gzip?: boolean } = {}): Promise<BuiltImage> {
  const busybox = new Uint8Array(await readFile(BUSYBOX_BIN))
  const base = tar([
    { path: 'bin/', type: 'dir' },
    { path: 'bin/busybox', type: 'file', data: busybox },
    { path: 'bin/sh', type: 'symlink', target: 'busybox' }
  ])
  const layerBytes = [base]
  for (const [i, size] of (opts.extraLayerSizes ?? []).entries()) {
    layerBytes.push(tar([{ path: 'data/', type: 'dir' }, { path: `data/layer${i}`, type: 'file', data: randomBytes(size), mode: 0o644 }]))
  }
  const diffIds = layerBytes.map(bytes => digestOf(bytes))
  const layers = layerBytes.map(tarBytes => {
    const bytes = opts.gzip === true ? new Uint8Array(gzipSync(tarBytes, { level: 1 })) : tarBytes
    return { digest: digestOf(bytes), bytes }
  })
  const layerMediaType = opts.gzip === true ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar'
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] },
    rootfs: { type: 'layers', diff_ids: diffIds }
  }))
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length },
    layers: layers.map(l => ({ mediaType: layerMediaType, digest: l.digest, size: l.bytes.length }))
  }))
  return {
    manifest: new Uint8Array(manifest),
    manifestDigest: digestOf(manifest),
    config: new Uint8Array(config),
    configDigest: digestOf(config),
    layers,
    blobBytes: config.length + layers.reduce((n, l) => n + l.bytes.length, 0)
  }
}

/** Pushes an image with the distribution API (monolithic blob uploads), tagging it `name:tag`. */
export async function pushImage (registryUrl: string, name: string, tag: string, img: BuiltImage): Promise<void> {
  for (const blob of [{ digest: img.configDigest, bytes: img.config }, ...img.layers]) {
    const head = await fetch(`${registryUrl}/v2/${name}/blobs/${blob.digest}`, { method: 'HEAD' })
    if (head.ok) continue
    const start = await fetch(`${registryUrl}/v2/${name}/blobs/uploads/`, { method: 'POST' })
    await start.body?.cancel()
    if (start.status !== 202) throw new Error(`upload start: HTTP ${start.status}`)
    const loc = new URL(start.headers.get('location') ?? '', registryUrl)
    loc.searchParams.set('digest', blob.digest)
    const put = await fetch(loc, { method: 'PUT', body: blob.bytes, headers: { 'content-type': 'application/octet-stream' } })
    await put.body?.cancel()
    if (put.status !== 201) throw new Error(`upload ${blob.digest}: HTTP ${put.status}`)
  }
  const res = await fetch(`${registryUrl}/v2/${name}/manifests/${tag}`, {
    method: 'PUT',
    body: img.manifest,
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }
  })
  await res.body?.cancel()
  if (res.status !== 201) throw new Error(`manifest put: HTTP ${res.status}`)
}

/**
 * Pushes a multi-platform index under `name:tag`: `img` (pushed already) for
 * linux/amd64, and a copy of its manifest labelled arm64 (tagged `TAG-arm`).
 * Returns the index's digest.
 */
export async function pushIndex (registryUrl: string, name: string, tag: string, img: BuiltImage): Promise<string> {
  const other = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(img.manifest).toString()), annotations: { variant: 'arm' } }))
  const putOther = await fetch(`${registryUrl}/v2/${name}/manifests/${tag}-arm`, { method: 'PUT', body: other, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })
  await putOther.body?.cancel()
  if (putOther.status !== 201) throw new Error(`arm64 manifest put: HTTP ${putOther.status}`)
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: digestOf(other), size: other.length, platform: { os: 'linux', architecture: 'arm64' } },
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: img.manifestDigest, size: img.manifest.length, platform: { os: 'linux', architecture: 'amd64' } }
    ]
  }))
  const put = await fetch(`${registryUrl}/v2/${name}/manifests/${tag}`, { method: 'PUT', body: index, headers: { 'content-type': 'application/vnd.oci.image.index.v1+json' } })
  await put.body?.cancel()
  if (put.status !== 201) throw new Error(`index put: HTTP ${put.status}`)
  return digestOf(index)
}

/** Writes the image as an OCI image layout (for `skopeo copy oci:DIR:TAG ...`). */
export async function writeImageLayout (dir: string, tag: string, img: BuiltImage): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true })
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  for (const b of [{ digest: img.manifestDigest, bytes: img.manifest }, { digest: img.configDigest, bytes: img.config }, ...img.layers]) {
    await writeFile(join(dir, 'blobs', 'sha256', b.digest.slice(7)), b.bytes)
  }
  await writeFile(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: img.manifestDigest, size: img.manifest.length, annotations: { 'org.opencontainers.image.ref.name': tag } }]
  }))
}

// ---- counting proxy -----------------------------------------------------------

export interface CountingProxy {
  host: string
  url: string
  /** Response body bytes of `/blobs/` requests (what the issue calls registry blob egress). */
  blobBytes: () => number
  /** Number of requests per kind. */
  requests: () => { blobs: number, manifests: number, other: number }
  reset: () => void
  /** While down, every request is answered 503. */
  setDown: (down: boolean) => void
  stop: () => Promise<void>
}

/**
 * An HTTP proxy in front of `targetUrl` that counts blob bytes; with
 * `bytesPerSecond` it paces all response bodies together like a remote link.
 */
export async function startCountingProxy (targetUrl: string, opts: { bytesPerSecond?: number } = {}): Promise<CountingProxy> {
  let blobBytes = 0
  const reqs = { blobs: 0, manifests: 0, other: 0 }
  let down = false
  const target = new URL(targetUrl)
  let nextFree = Date.now()
  const server: Server = createServer((req, res) => {
    const isBlob = /\/blobs\/sha256:/.test(req.url ?? '')
    if (isBlob) reqs.blobs++
    else if ((req.url ?? '').includes('/manifests/')) reqs.manifests++
    else reqs.other++
    if (down) { res.writeHead(503).end(); return }
    // A client that goes away mid-body (an aborted range) must not crash the
    // proxy with a write after end, and its upstream request goes too.
    res.on('error', () => {})
    const send = (chunk: Buffer): void => { if (!res.writableEnded && !res.destroyed) res.write(chunk) }
    const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host }, agent: false }, upRes => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers)
      // 'end' comes as soon as the last chunk is read, while that chunk may
      // still wait for its turn under the throttle: the response ends only
      // after every held chunk went out. (Ending it on a timer of its own
      // raced the last chunk's timer and cut responses short, which clients
      // saw as bodies that stall until their idle timeout.)
      let held = 0
      let ended = false
      const finish = (): void => { if (ended && held === 0 && !res.destroyed) res.end() }
      upRes.on('data', (chunk: Buffer) => {
        if (isBlob && req.method !== 'HEAD') blobBytes += chunk.length
        if (opts.bytesPerSecond !== undefined) {
          const now = Date.now()
          nextFree = Math.max(nextFree, now) + (chunk.length / opts.bytesPerSecond) * 1000
          const wait = nextFree - now
          if (wait > 1) {
            held++
            upRes.pause()
            setTimeout(() => { send(chunk); held--; upRes.resume(); finish() }, wait)
            return
          }
        }
        send(chunk)
      })
      // An upstream response cut short must reach the client as a broken
      // response, not as a silence it only notices after its idle timeout.
      // (`complete`: the whole message arrived; it may still sit in the
      // paused stream when the upstream socket closes.)
      upRes.on('close', () => { if (!upRes.complete) res.destroy() })
      upRes.on('error', () => { res.destroy() })
      upRes.on('end', () => { ended = true; finish() })
    })
    up.on('error', () => { if (!res.headersSent) res.writeHead(502).end(); else res.destroy() })
    res.on('close', () => { if (!res.writableFinished) up.destroy() })
    req.pipe(up)
  })
  // Longer than any client's idle timeout: otherwise a loaded machine lets
  // the server close an idle keep-alive socket just as the client reuses it
  // ("other side closed").
  server.keepAliveTimeout = 65_000
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    blobBytes: () => blobBytes,
    requests: () => ({ ...reqs }),
    reset: () => { blobBytes = 0; reqs.blobs = 0; reqs.manifests = 0; reqs.other = 0 },
    setDown: (d) => { down = d },
    stop: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}
