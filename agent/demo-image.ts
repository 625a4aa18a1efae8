// The image `bolt-agent dev` runs without any registry: busybox from the
// host (Debian's busybox-static), written as a one-layer OCI image layout.
// Refs under `bolt.local/` are built here instead of pulled.
import { createHash } from 'node:crypto'
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { mkdirWithMode } from '../native/file-modes.js'

export const LOCAL_REF_PREFIX = 'bolt.local/'
export const DEMO_REF = 'bolt.local/busybox:demo'
export const BUSYBOX_PATHS = ['/bin/busybox', '/usr/bin/busybox']

export class DemoImageError extends Error {
  override name = 'DemoImageError'
}

export function busyboxPath (): string | undefined {
  return BUSYBOX_PATHS.find(p => existsSync(p))
}

const sha = (b: Uint8Array): string => 'sha256:' + createHash('sha256').update(b).digest('hex')

/** Writes an OCI image layout holding the demo image into `dir`. */
export async function writeDemoLayout (dir: string, ref: string): Promise<void> {
  const bb = busyboxPath()
  if (bb === undefined) throw new DemoImageError('the demo image needs busybox on the host (apt-get install busybox-static)')
  const stage = await mkdtemp(join(tmpdir(), 'bolt-demo-'))
  try {
    await mkdirWithMode(join(stage, 'bin'), 0o755) // the capsule's /bin, whatever the agent's umask
    await copyFile(bb, join(stage, 'bin', 'busybox'))
    for (const applet of ['sh', 'echo', 'sleep', 'cat', 'ls', 'date', 'true']) await symlink('busybox', join(stage, 'bin', applet))
    const layerFile = join(stage, 'layer.tar')
    const { create: createTar } = await import('tar')
    await createTar({ cwd: stage, file: layerFile, portable: true, noMtime: true }, ['bin'])
    const layer = new Uint8Array(await readFile(layerFile))
    const config = Buffer.from(JSON.stringify({
      architecture: process.arch === 'arm64' ? 'arm64' : 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sh', '-c', 'echo hello from a bolt capsule; sleep 3600'], Env: ['PATH=/bin'] },
      rootfs: { type: 'layers', diff_ids: [sha(layer)] }
    }))
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(layer), size: layer.length }]
    }))
    const blobs = join(dir, 'blobs', 'sha256')
    await mkdir(blobs, { recursive: true })
    for (const b of [layer, config, manifest]) await writeFile(join(blobs, sha(b).slice(7)), b)
    await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
    await writeFile(join(dir, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(manifest), size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': ref } }]
    }))
  } finally {
    await rm(stage, { recursive: true, force: true })
  }
}
