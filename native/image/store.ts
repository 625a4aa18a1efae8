// Images on this node: layers extracted once and shared (overlayfs lower
// dirs), or, where overlayfs cannot be used, one flattened rootfs per image
// copied for each capsule. Everything is built in a staging dir under the
// data dir and renamed into place, so a crash leaves no half-extracted layer.
import { randomBytes } from 'node:crypto'
import { lstat, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { mustRun, runCommand, type CommandRunner } from '../command.js'
import { ImageLayoutError, RootfsError } from '../errors.js'
import { extractLayer } from './extract.js'
import { mkdirWithMode } from '../file-modes.js'
import { resolveImage, verifyBlob, type ImageConfig } from './layout.js'

export type RootfsMode = 'overlay' | 'copy'

/** overlayfs mount options must fit one page; 64-hex layer names plus ':' allow about this many. */
export const MAX_OVERLAY_LAYERS = 60

export interface PreparedImage {
  /** Manifest digest. */
  id: string
  ref: string
  config: ImageConfig
  /** Uncompressed layer digests, bottom first. */
  diffIds: string[]
  mode: RootfsMode
}


function hex (digest: string): string {
  return digest.slice(digest.indexOf(':') + 1)
}

export class ImageStore {
  private readonly inflight = new Map<string, Promise<void>>()
  private readonly layersDir: string
  private readonly imagesDir: string
  private readonly tmpDir: string

  constructor (dataDir: string, private readonly mode: RootfsMode, private readonly rootless: boolean) {
    this.layersDir = join(dataDir, 'layers')
    this.imagesDir = join(dataDir, 'images')
    this.tmpDir = join(dataDir, 'tmp')
  }

  async init (): Promise<void> {
    await rm(this.tmpDir, { recursive: true, force: true }) // staging left by a crash
    for (const d of [this.layersDir, this.imagesDir, this.tmpDir]) await mkdir(d, { recursive: true, mode: 0o700 })
  }

  /** Resolves `ref` in the OCI layout, verifies every blob, extracts what is not cached yet. */
  async prepare (layoutDir: string, ref: string, signal?: AbortSignal): Promise<PreparedImage> {
    const img = await resolveImage(layoutDir, ref)
    const cached = await this.get(img.id)
    if (cached !== undefined) return cached
    const mode: RootfsMode = this.mode === 'overlay' && img.layers.length <= MAX_OVERLAY_LAYERS ? 'overlay' : 'copy'
    const prepared: PreparedImage = { id: img.id, ref, config: img.config, diffIds: img.layers.map(l => l.diffId), mode }
    // Verify all compressed blobs before writing anything.
    for (const l of img.layers) await verifyBlob(l.blobPath, l.descriptor)
    if (mode === 'overlay') {
      for (const l of img.layers) {
        await this.once(`layer:${l.diffId}`, async () => {
          const dest = join(this.layersDir, hex(l.diffId))
          if (await exists(dest)) return
          await this.staged(dest, async staging => { await extractLayer(l, staging, { mode: 'overlay', rootless: this.rootless, signal }) })
        })
      }
    }
    const imageDir = join(this.imagesDir, hex(img.id))
    await this.once(`image:${img.id}`, async () => {
      if (await exists(join(imageDir, 'image.json'))) return
      await this.staged(imageDir, async staging => {
        if (mode === 'copy') {
          const rootfs = join(staging, 'rootfs')
          await mkdirWithMode(rootfs, 0o755) // the capsule's `/`, entered by its users
          for (const l of img.layers) await extractLayer(l, rootfs, { mode: 'apply', rootless: this.rootless, signal })
        }
        await writeFile(join(staging, 'image.json'), JSON.stringify(prepared))
      })
    })
    return prepared
  }

  async get (id: string): Promise<PreparedImage | undefined> {
    try {
      return JSON.parse(await readFile(join(this.imagesDir, hex(id), 'image.json'), 'utf8')) as PreparedImage
    } catch {
      // Not prepared. (image.json is written in staging and renamed in with its dir, so it is never half there;
      // throwing here would leave an image that neither prepare nor remove can get past.)
      return undefined
    }
  }

  /** Images prepared on this node. */
  async list (): Promise<PreparedImage[]> {
    const out: PreparedImage[] = []
    for (const h of await readdir(this.imagesDir).catch(() => [] as string[])) { // init() made it: absent only before init, when none is prepared
      const img = await this.get(`sha256:${h}`)
      if (img !== undefined) out.push(img)
    }
    return out
  }

  /**
   * Deletes an image and the extracted layers no other image uses. The caller
   * makes sure no capsule runs from it (overlay rootfs mounts use the layers).
   */
  async remove (id: string): Promise<boolean> {
    const img = await this.get(id)
    if (img === undefined) return false
    await rm(join(this.imagesDir, hex(id)), { recursive: true, force: true })
    const stillUsed = new Set((await this.list()).flatMap(i => i.mode === 'overlay' ? i.diffIds : []))
    if (img.mode === 'overlay') {
      for (const d of img.diffIds) if (!stillUsed.has(d)) await rm(join(this.layersDir, hex(d)), { recursive: true, force: true })
    }
    return true
  }

  /**
   * Makes `<capsuleDir>/rootfs` for a capsule: an overlay mount over the
   * image's layers with the capsule's own upper dir, or a copy. `run`
   * runs the mount (a pre-spawned shell's, on the start path).
   */
  async createRootfs (image: PreparedImage, capsuleDir: string, run: CommandRunner = runCommand): Promise<string> {
    const rootfs = join(capsuleDir, 'rootfs')
    if (image.mode === 'overlay') {
      const upper = join(capsuleDir, 'upper')
      const work = join(capsuleDir, 'work')
      // upper's root is the capsule's `/`, entered by its users.
      for (const d of [upper, work, rootfs]) await mkdirWithMode(d, 0o755, true)
      // Relative lower dirs (mount runs in the layers dir) keep the options under a page.
      const lower = [...image.diffIds].reverse().map(hex).join(':')
      await mustRun('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, rootfs],
        m => new RootfsError(`cannot mount the capsule's overlay rootfs: ${m}`), { cwd: this.layersDir }, run)
      return rootfs
    }
    const src = join(this.imagesDir, hex(image.id), 'rootfs')
    if (!(await exists(src))) throw new ImageLayoutError(`image ${image.ref} (${image.id}) is not prepared on this node`)
    await mkdir(capsuleDir, { recursive: true })
    await mustRun('cp', ['-a', '--reflink=auto', src, rootfs], m => new RootfsError(`cannot copy the image rootfs: ${m}`))
    return rootfs
  }

  /** Unmounts (if mounted) and deletes a capsule's rootfs; safe to call twice. */
  async removeRootfs (capsuleDir: string): Promise<void> {
    const rootfs = join(capsuleDir, 'rootfs')
    if (await isMountPoint(rootfs)) {
      const r = await runCommand('umount', [rootfs])
      if (r.exitCode !== 0 && await isMountPoint(rootfs)) {
        await runCommand('umount', ['-l', rootfs]) // busy: detach now, the kernel frees it when the last user goes
      }
    }
    for (const d of ['rootfs', 'upper', 'work']) await rm(join(capsuleDir, d), { recursive: true, force: true })
  }

  private async once (key: string, fn: () => Promise<void>): Promise<void> {
    const running = this.inflight.get(key)
    if (running !== undefined) { await running; return }
    const p = fn().finally(() => this.inflight.delete(key))
    this.inflight.set(key, p)
    await p
  }

  private async staged (dest: string, fill: (staging: string) => Promise<void>): Promise<void> {
    const staging = join(this.tmpDir, randomBytes(8).toString('hex'))
    await mkdirWithMode(staging, 0o755)
    try {
      await fill(staging)
      await rename(staging, dest)
    } catch (err) {
      await rm(staging, { recursive: true, force: true })
      throw err
    }
  }
}

async function exists (p: string): Promise<boolean> {
  return await lstat(p).then(() => true, () => false)
}

/** Whether `path` is a mount point, from /proc/self/mountinfo (field 5, octal-escaped). */
export async function isMountPoint (path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8') // no catch: a guessed "not mounted" would let removeRootfs rm -rf into a mount
  for (const line of info.split('\n')) {
    const mp = line.split(' ')[4]
    if (mp !== undefined && mp.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))) === path) return true
  }
  return false
}
