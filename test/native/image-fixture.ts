// Test images: OCI image layouts written from tar bytes built with the `tar`
// package's Header encoder, so tests can craft hostile layers too. The busybox
// image (from Debian's busybox-static) is built once per test run and cached
// in the temp dir.
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync, zstdCompressSync } from 'node:zlib'
import { execFileSync } from 'node:child_process'
import { Header } from 'tar'

export const BUSYBOX = '/bin/busybox'
export const BUSYBOX_REF = 'busybox:latest'

export interface TarEntry {
  path: string
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'FIFO'
  data?: Buffer | string
  mode?: number
  linkpath?: string
  devmaj?: number
  devmin?: number
}

/** Encodes entries as a tar archive (ustar headers from tar's own encoder). */
export function makeTar (entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = []
  for (const e of entries) {
    const type = e.type ?? 'File'
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data)
    const h = new Header({
      path: e.path,
      type,
      mode: e.mode ?? (type === 'Directory' ? 0o755 : 0o644),
      size: type === 'File' ? data.length : 0,
      linkpath: e.linkpath,
      uid: 0,
      gid: 0,
      mtime: new Date(0),
      devmaj: e.devmaj ?? 0,
      devmin: e.devmin ?? 0
    })
    const block = Buffer.alloc(512)
    h.encode(block, 0)
    blocks.push(block)
    if (type === 'File' && data.length > 0) {
      blocks.push(data, Buffer.alloc((512 - (data.length % 512)) % 512))
    }
  }
  blocks.push(Buffer.alloc(1024))
  return Buffer.concat(blocks)
}

export type Compression = 'none' | 'gzip' | 'zstd'

const MEDIA: Record<Compression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd'
}

function sha (b: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex')
}

export interface LayoutOptions {
  compression?: Compression
  ref?: string
  cmd?: string[]
  env?: string[]
  /** Corrupt this layer's blob after writing it (bad digest test). */
  corruptLayer?: number
}

/** Writes an OCI image layout at `dir` with the given layers (uncompressed tars). */
export async function writeLayout (dir: string, layers: Buffer[], opts: LayoutOptions = {}): Promise<{ layoutDir: string, ref: string, manifestDigest: string }> {
  const { compression = 'gzip', ref = BUSYBOX_REF, cmd = ['/bin/sh'], env = ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'] } = opts
  const blobs = join(dir, 'blobs', 'sha256')
  await mkdir(blobs, { recursive: true })
  const put = async (b: Buffer | string): Promise<{ digest: string, size: number }> => {
    const digest = sha(b)
    await writeFile(join(blobs, digest.slice(7)), b)
    return { digest, size: Buffer.byteLength(b) }
  }
  const layerDescs = []
  for (const [i, tarBytes] of layers.entries()) {
    const blob = compression === 'gzip' ? gzipSync(tarBytes) : compression === 'zstd' ? zstdCompressSync(tarBytes) : tarBytes
    const d = await put(blob)
    if (opts.corruptLayer === i) {
      const bad = Buffer.from(blob)
      bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 0xff
      await writeFile(join(blobs, d.digest.slice(7)), bad)
    }
    layerDescs.push({ mediaType: MEDIA[compression], ...d })
  }
  const config = JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: { Env: env, Cmd: cmd, WorkingDir: '/' },
    rootfs: { type: 'layers', diff_ids: layers.map(l => sha(l)) }
  })
  const configDesc = { mediaType: 'application/vnd.oci.image.config.v1+json', ...(await put(config)) }
  const manifest = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: configDesc, layers: layerDescs })
  const manifestDesc = { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...(await put(manifest)), annotations: { 'org.opencontainers.image.ref.name': ref } }
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [manifestDesc] }))
  return { layoutDir: dir, ref, manifestDigest: manifestDesc.digest }
}

/** A busybox rootfs layer: /bin/busybox, one symlink per applet, /etc/passwd and /etc/group. */
export async function busyboxLayer (): Promise<Buffer> {
  const bin = await readFile(BUSYBOX)
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter(a => /^[a-z0-9_.[-]+$/.test(a) && a !== 'busybox')
  const entries: TarEntry[] = [
    { path: 'bin/', type: 'Directory' },
    { path: 'bin/busybox', data: bin, mode: 0o755 },
    ...applets.map(a => ({ path: `bin/${a}`, type: 'SymbolicLink' as const, linkpath: 'busybox' })),
    { path: 'etc/', type: 'Directory' },
    { path: 'etc/passwd', data: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' },
    { path: 'etc/group', data: 'root:x:0:\nnogroup:x:65534:\n' },
    { path: 'root/', type: 'Directory', mode: 0o700 },
    { path: 'tmp/', type: 'Directory', mode: 0o1777 },
    { path: 'proc/', type: 'Directory' },
    { path: 'sys/', type: 'Directory' },
    { path: 'dev/', type: 'Directory' }
  ]
  return makeTar(entries)
}

/**
 * The busybox test image as an OCI layout, built once per test run (keyed by
 * this process tree's parent and the busybox binary) and shared by test files.
 */
export async function busyboxImage (compression: Compression = 'gzip'): Promise<{ layoutDir: string, ref: string }> {
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing: apt-get install busybox-static`)
  const key = createHash('sha256').update(await readFile(BUSYBOX)).update(compression).digest('hex').slice(0, 16)
  const dir = join(tmpdir(), `bolt-native-test-image-${key}`)
  if (existsSync(join(dir, 'index.json'))) return { layoutDir: dir, ref: BUSYBOX_REF }
  const staging = `${dir}.${randomBytes(4).toString('hex')}`
  await writeLayout(staging, [await busyboxLayer()], { compression })
  try {
    await rename(staging, dir)
  } catch {
    await rm(staging, { recursive: true, force: true }) // another test file won the race
  }
  return { layoutDir: dir, ref: BUSYBOX_REF }
}
