// Applying one layer tarball to a directory, safely: every entry name is
// checked, every lookup resolves inside the destination, and symlinks, hard
// links and device nodes that could reach outside are refused. Two targets:
// `apply` merges onto a rootfs (whiteouts delete), `overlay` writes a layer
// dir in overlayfs's own format (whiteouts as 0:0 char devices, opaque xattrs).
import { createHash } from 'node:crypto'
import { constants, createReadStream, type Stats } from 'node:fs'
import { lchown, link, lstat, mkdir, open, readdir, readlink, rm, symlink } from 'node:fs/promises'
import { once } from 'node:events'
import { join, relative } from 'node:path'
import { createGunzip, createZstdDecompress } from 'node:zlib'
import type { Readable } from 'node:stream'
import type { ReadEntry } from 'tar'
import { mustRun } from '../command.js'
import { mkdirWithMode } from '../file-modes.js'
import { DeviceNodeError, DigestMismatchError, HardlinkError, NativeError, PathTraversalError, SymlinkEscapeError, UnsupportedLayerError } from '../errors.js'
import { assertSymlinkInside, entryComponents, resolveInRoot } from './secure-path.js'
import type { LayerCompression } from './layout.js'

export type ExtractMode = 'apply' | 'overlay'

export interface ExtractOptions {
  mode: ExtractMode
  /** Rootless: no chown, no device nodes. */
  rootless: boolean
  signal?: AbortSignal
}

export interface LayerSource {
  blobPath: string
  compression: LayerCompression
  /** sha256 of the uncompressed tar, from the image config. */
  diffId: string
}

const WHITEOUT_PREFIX = '.wh.'
const OPAQUE_WHITEOUT = '.wh..wh..opq'

/** lstat, or undefined when nothing is there (ENOENT, or ENOTDIR: a component above is not a directory); other failures are thrown. */
async function lstatIfThere (path: string): Promise<Stats | undefined> {
  return await lstat(path).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined; throw err })
}

function decompressor (c: LayerCompression): NodeJS.ReadWriteStream | undefined {
  if (c === 'gzip') return createGunzip()
  if (c === 'zstd') return createZstdDecompress()
  return undefined
}

/**
 * Extracts the layer at `src` into `dest` (which must exist). Checks the
 * uncompressed bytes against `diffId` at the end and throws
 * DigestMismatchError when they differ: callers extract into a staging dir
 * and discard it on any error.
 */
export async function extractLayer (src: LayerSource, dest: string, opts: ExtractOptions): Promise<void> {
  const applier = new EntryApplier(dest, opts)
  const hash = createHash('sha256')
  let failure: Error | undefined
  let chain: Promise<void> = Promise.resolve()
  // Loaded on first use: most agents extract nothing between restarts.
  const { Parser } = await import('tar')
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      chain = chain.then(async () => {
        if (failure !== undefined) { entry.resume(); return }
        try {
          await applier.apply(entry)
        } catch (err) {
          failure ??= err as Error
          entry.resume()
        }
      })
    }
  })
  parser.on('error', (err: Error) => { failure ??= new UnsupportedLayerError(`layer ${src.diffId} is not a valid tar: ${err.message}`) })
  const ended = once(parser, 'end')
  const file = createReadStream(src.blobPath)
  const dec = decompressor(src.compression)
  const stream: Readable = dec === undefined ? file : file.pipe(dec) as unknown as Readable
  if (dec !== undefined) file.on('error', err => { (dec as unknown as Readable).destroy(err) })
  try {
    for await (const chunk of stream) {
      opts.signal?.throwIfAborted()
      if (failure !== undefined) break
      hash.update(chunk as Buffer)
      if (!parser.write(chunk as Buffer)) await once(parser, 'drain')
    }
    if (failure === undefined) {
      parser.end()
      await ended
    }
  } catch (err) {
    failure ??= err instanceof NativeError ? err : new UnsupportedLayerError(`layer ${src.diffId} could not be read: ${(err as Error).message}`)
  } finally {
    file.destroy()
  }
  await chain
  if (failure !== undefined) throw failure
  const got = `sha256:${hash.digest('hex')}`
  if (got !== src.diffId) {
    throw new DigestMismatchError(`layer uncompressed content hashes to ${got}, the image config says ${src.diffId}: the image is corrupt`)
  }
  await applier.finish()
}

/** A directory whose mode is set once the whole layer is written, and the inode it was. */
interface DeferredMode {
  /** The entry's name in the layer, for messages. */
  name: string
  /** Where it landed, as components under the root (in-root links already resolved). */
  parts: string[]
  dev: bigint
  ino: bigint
  mode: number
}

/**
 * Applies tar entries one at a time; remembers what this layer created (for
 * opaque dirs) and the directory modes to set last. Nothing here acts on a
 * path by name after writing it: files are chmod/chowned through their open
 * descriptor, deferred directory modes through a descriptor opened with
 * O_NOFOLLOW on the very inode this layer made, so a later entry that swaps a
 * path for a link cannot redirect a chmod to the host.
 */
class EntryApplier {
  private readonly createdInLayer = new Set<string>()
  private readonly dirModes: DeferredMode[] = []

  constructor (private readonly root: string, private readonly opts: ExtractOptions) {}

  async apply (entry: ReadEntry): Promise<void> {
    if (entry.meta || entry.ignore) { entry.resume(); return }
    const parts = entryComponents(entry.path)
    if (parts.length === 0) { // the root itself ("./")
      if (entry.type === 'Directory' && entry.mode !== undefined) await this.deferMode(parts, this.root, entry.mode)
      entry.resume()
      return
    }
    const base = parts[parts.length - 1] as string
    if (base.startsWith(WHITEOUT_PREFIX)) {
      await this.whiteout(parts, base)
      entry.resume()
      return
    }
    const parent = await this.ensureParent(parts)
    const target = join(parent, base)
    this.createdInLayer.add(parts.join('/'))
    switch (entry.type) {
      case 'Directory': {
        const st = await lstatIfThere(target)
        if (st !== undefined && !st.isDirectory()) await rm(target, { recursive: true, force: true })
        if (st === undefined || !st.isDirectory()) await mkdir(target, { mode: 0o700 })
        await this.deferMode(parts, target, entry.mode ?? 0o755)
        await this.chown(target, entry)
        entry.resume()
        return
      }
      case 'File':
      case 'OldFile':
      case 'ContiguousFile': {
        await this.replace(target)
        // O_EXCL|O_NOFOLLOW: the path was just cleared; never write through a link planted meanwhile.
        const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW
        const fh = await open(target, flags, 0o600)
        try {
          for await (const chunk of entry as AsyncIterable<Buffer>) {
            for (let off = 0; off < chunk.length;) off += (await fh.write(chunk, off)).bytesWritten
          }
          // Through the descriptor, never by name; chown first, as it clears set-id bits.
          if (!this.opts.rootless) await fh.chown(entry.uid ?? 0, entry.gid ?? 0)
          await fh.chmod((entry.mode ?? 0o644) & 0o7777)
        } finally {
          await fh.close()
        }
        return
      }
      case 'SymbolicLink': {
        const linkTarget = entry.linkpath ?? ''
        assertSymlinkInside(parts, linkTarget)
        await this.replace(target)
        await symlink(linkTarget, target)
        await this.chown(target, entry)
        entry.resume()
        return
      }
      case 'Link': {
        const linkName = entry.linkpath ?? ''
        if (linkName.startsWith('/')) throw new HardlinkError(`hard link /${parts.join('/')} has absolute target ${linkName}: refusing the layer`)
        let linkParts: string[]
        try {
          linkParts = entryComponents(linkName)
        } catch (err) {
          if (err instanceof PathTraversalError) throw new HardlinkError(`hard link /${parts.join('/')} -> ${linkName} climbs out of the rootfs: refusing the layer`)
          throw err
        }
        const from = await resolveInRoot(this.root, linkParts, false)
        const st = await lstatIfThere(from)
        if (st === undefined) throw new HardlinkError(`hard link /${parts.join('/')} -> ${linkName}: the target is not in the layer`)
        if (st.isDirectory()) throw new HardlinkError(`hard link /${parts.join('/')} -> ${linkName}: the target is a directory`)
        // link(2) does not follow a symlink target: the new name becomes the same
        // symlink, whose (relative) target must stay inside from its new place too.
        if (st.isSymbolicLink()) assertSymlinkInside(parts, await readlink(from))
        await this.replace(target)
        await link(from, target)
        entry.resume()
        return
      }
      case 'CharacterDevice':
      case 'BlockDevice':
      case 'FIFO': {
        await this.special(entry, parts, target)
        entry.resume()
        return
      }
      default:
        throw new UnsupportedLayerError(`layer entry /${parts.join('/')} has tar type ${entry.type}, which a rootfs cannot hold`)
    }
  }

  /**
   * Sets the deferred directory modes. Every component from the root down
   * must still be a real directory and the last the inode recorded when the
   * entry was applied; anything else means a later entry of the layer swapped
   * a link in, and the layer is refused rather than followed.
   */
  async finish (): Promise<void> {
    // Deepest first, so a read-only parent never blocks setting its children.
    for (const d of this.dirModes.reverse()) {
      const replaced = (): SymlinkEscapeError => new SymlinkEscapeError(
        `layer entry ${d.name} is a directory, but a later entry of the same layer replaced it (or a directory above it) with a link or a file: refusing the layer`)
      for (let i = 1; i < d.parts.length; i++) {
        const st = await lstatIfThere(join(this.root, ...d.parts.slice(0, i)))
        if (st === undefined || !st.isDirectory()) throw replaced()
      }
      const flags = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW
      const fh = await open(join(this.root, ...d.parts), flags).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ELOOP' || err.code === 'ENOTDIR' || err.code === 'ENOENT') throw replaced()
        throw err
      })
      try {
        const st = await fh.stat({ bigint: true })
        if (st.dev !== d.dev || st.ino !== d.ino) throw replaced()
        await fh.chmod(d.mode)
      } finally {
        await fh.close()
      }
    }
  }

  /** Records the directory now at `parts` (just created or kept), whose mode is set by finish(). */
  private async deferMode (entryParts: string[], host: string, mode: number): Promise<void> {
    const st = await lstat(host, { bigint: true })
    const parts = relative(this.root, host).split('/').filter(p => p !== '')
    this.dirModes.push({ name: `/${entryParts.join('/')}`, parts, dev: st.dev, ino: st.ino, mode: mode & 0o7777 })
  }

  /** Resolves (and creates, as plain dirs) the parent of `parts`, never leaving the root. */
  private async ensureParent (parts: string[]): Promise<string> {
    const parentParts = parts.slice(0, -1)
    const parent = await resolveInRoot(this.root, parentParts, true)
    const st = await lstatIfThere(parent)
    if (st === undefined) {
      // Walk it component by component so an intermediate symlink is resolved in-root too.
      let cur: string[] = []
      for (const p of parentParts) {
        cur = [...cur, p]
        const host = await resolveInRoot(this.root, cur, true)
        const s = await lstatIfThere(host)
        if (s === undefined) await mkdirWithMode(host, 0o755) // implied dirs: 0755 whatever the agent's umask
        else if (!s.isDirectory()) throw new UnsupportedLayerError(`layer entry /${parts.join('/')} needs /${cur.join('/')} to be a directory, it is not`)
      }
      return await resolveInRoot(this.root, parentParts, true)
    }
    if (!st.isDirectory()) throw new UnsupportedLayerError(`layer entry /${parts.join('/')} needs /${parentParts.join('/')} to be a directory, it is not`)
    return parent
  }

  /** Removes whatever a lower layer left at `target` (never following it). */
  private async replace (target: string): Promise<void> {
    await rm(target, { recursive: true, force: true })
  }

  private async whiteout (parts: string[], base: string): Promise<void> {
    const parent = await this.ensureParent(parts)
    if (base === OPAQUE_WHITEOUT) {
      if (this.opts.mode === 'overlay') {
        await mustRun('setfattr', ['-h', '-n', 'trusted.overlay.opaque', '-v', 'y', parent], m => new UnsupportedLayerError(`cannot mark an opaque dir for overlayfs: ${m}`))
        return
      }
      const dirKey = parts.slice(0, -1).join('/')
      for (const name of await readdir(parent)) {
        const key = dirKey === '' ? name : `${dirKey}/${name}`
        if (!this.createdInLayer.has(key)) await rm(join(parent, name), { recursive: true, force: true })
      }
      return
    }
    const name = base.slice(WHITEOUT_PREFIX.length)
    if (name === '' || name === '.' || name === '..') throw new PathTraversalError(`whiteout /${parts.join('/')} names no file`)
    const victim = join(parent, name)
    if (this.opts.mode === 'overlay') {
      await rm(victim, { recursive: true, force: true })
      await mustRun('mknod', ['-m', '000', victim, 'c', '0', '0'], m => new DeviceNodeError(`cannot write an overlayfs whiteout: ${m}`))
      return
    }
    await rm(victim, { recursive: true, force: true })
  }

  private async special (entry: ReadEntry, parts: string[], target: string): Promise<void> {
    await this.replace(target)
    const mode = ((entry.mode ?? 0o644) & 0o7777).toString(8)
    if (entry.type === 'FIFO') {
      await mustRun('mkfifo', ['-m', mode, target], m => new UnsupportedLayerError(m))
      return
    }
    if (this.opts.rootless) {
      throw new DeviceNodeError(`layer holds device node /${parts.join('/')}, which a rootless runtime cannot create: rebuild the image without it`)
    }
    const kind = entry.type === 'CharacterDevice' ? 'c' : 'b'
    const major = entry.header.devmaj ?? 0
    const minor = entry.header.devmin ?? 0
    await mustRun('mknod', ['-m', mode, target, kind, String(major), String(minor)], m => new DeviceNodeError(m))
    await this.chown(target, entry)
  }

  private async chown (target: string, entry: ReadEntry): Promise<void> {
    if (this.opts.rootless) return
    await lchown(target, entry.uid ?? 0, entry.gid ?? 0)
  }
}
