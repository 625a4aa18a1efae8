// Capsule dirs whose overlay rootfs is mounted ahead of time, one for each
// recently started image. A start renames a spare over its own new (empty)
// dir instead of mounting there: the mount, a process, moves off the start
// to a quiet moment after it. The rename carries the mount along, so the
// capsule dir is exactly what createRootfs would have made. Copy-mode images
// get none: a spare would be a whole copy of the image on disk.
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { CommandRunner } from '../command.js'
import type { ImageStore, PreparedImage } from './store.js'

/** Images that keep a spare (the most recently started ones). */
export const MAX_SPARE_IMAGES = 4

/** What a spare is made with: the image store's rootfs calls. */
export type SpareStore = Pick<ImageStore, 'get' | 'createRootfs' | 'removeRootfs'>

export class RootfsSpares {
  /** Ready spares by image id, oldest image first (a Map keeps insertion order). */
  private readonly ready = new Map<string, string>()
  /** Images started since the last fill, to make spares of. */
  private readonly wanted = new Set<string>()
  private filling: Promise<void> = Promise.resolve()
  private closed = false

  /** `dir`: on the capsules' file system (a spare moves by rename), owned by this runtime alone. */
  constructor (private readonly dir: string, private readonly store: SpareStore) {}

  /** Removes spares a previous agent left (their mounts included). */
  async init (): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    for (const name of await readdir(this.dir)) await this.discard(join(this.dir, name))
  }

  /**
   * Puts a spare of `image` in place of `dest`, an empty dir the caller has
   * just made (rename replaces an empty dir): true when it did, false when
   * there was none (the caller makes the rootfs in `dest` itself). Either
   * way an overlay image gets a spare at the next fill().
   */
  async take (image: PreparedImage, dest: string, onError: (err: Error) => void): Promise<boolean> {
    if (image.mode !== 'overlay' || this.closed) return false
    this.wanted.add(image.id)
    const spare = this.ready.get(image.id)
    if (spare === undefined) return false
    this.ready.delete(image.id)
    try {
      await rename(spare, dest)
      return true
    } catch (err) {
      // `dest` is still the caller's empty dir: the start goes on without a spare.
      onError(err as Error)
      await this.discard(spare).catch(onError)
      return false
    }
  }

  /**
   * Makes the spares asked for since the last fill, through `run` (a shell
   * pool's runner); at most MAX_SPARE_IMAGES images keep one, the oldest
   * dropped first. Failures only cost the next start its spare.
   */
  async fill (run: CommandRunner, onError: (err: Error) => void): Promise<void> {
    const next = this.filling.then(async () => {
      for (const id of [...this.wanted]) {
        this.wanted.delete(id)
        if (this.closed || this.ready.has(id)) continue
        const image = await this.store.get(id)
        if (image === undefined) continue // removed meanwhile
        const spare = join(this.dir, randomBytes(8).toString('hex'))
        try {
          await mkdir(spare, { mode: 0o700 })
          await this.store.createRootfs(image, spare, run)
        } catch (err) {
          onError(err as Error)
          await this.discard(spare).catch(onError)
          continue
        }
        if (this.closed) { await this.discard(spare).catch(onError); continue }
        this.ready.set(id, spare)
        while (this.ready.size > MAX_SPARE_IMAGES) await this.drop(this.ready.keys().next().value as string)
      }
    })
    this.filling = next.catch(() => undefined) // each caller gets its own failure from `next`
    await next
  }

  /** Unmounts and removes the spare of `imageId` (before the image itself is removed). */
  async drop (imageId: string): Promise<void> {
    this.wanted.delete(imageId)
    await this.filling
    const spare = this.ready.get(imageId)
    this.ready.delete(imageId)
    if (spare !== undefined) await this.discard(spare)
  }

  /** Removes every spare; nothing is made afterwards. */
  async close (): Promise<void> {
    this.closed = true
    this.wanted.clear()
    await this.filling
    for (const spare of this.ready.values()) await this.discard(spare)
    this.ready.clear()
  }

  private async discard (spare: string): Promise<void> {
    // removeRootfs unmounts first: an rm -rf never runs into a mounted rootfs.
    await this.store.removeRootfs(spare)
    await rm(spare, { recursive: true, force: true })
  }
}
