// The disk the mirror may fill for its clients: anyone who reaches the
// mirror can ask for any blob of an allowed registry, so the blobs it keeps
// — every blob no capsule image or object pins, the mirror's own `mirror:`
// pins included — stay under `[mirror] disk_quota_bytes`. Before a pull,
// the least recently used of those are evicted; a blob that cannot fit even
// then is refused with MirrorQuotaExceededError (HTTP 507).
import type { BlobStore } from '../../p2p/content/blob-store.js'

/** Default of `[mirror] disk_quota_bytes`: room for a few dozen typical images. */
export const DEFAULT_MIRROR_DISK_QUOTA_BYTES = 20 * 1024 ** 3

/** Pins by these owners are the mirror's own: they do not keep a blob out of the quota. */
const MIRROR_OWNER_PREFIX = 'mirror:'

export class MirrorQuotaExceededError extends Error {
  override name = 'MirrorQuotaExceededError'
}

export class MirrorQuota {
  /** Sizes of pulls the mirror started, by digest, until they settle. */
  private readonly reserved = new Map<string, number>()
  /** Reservations run one at a time, so two never evict for the same room. */
  private queue: Promise<unknown> = Promise.resolve()

  constructor (private readonly store: BlobStore, readonly limitBytes: number) {}

  /** Bytes the quota counts now: blobs no other owner pins, plus pulls in progress. */
  async usedBytes (): Promise<number> {
    let n = 0
    const kept = this.keptByOthers()
    for (const b of await this.store.list()) if (!kept.has(b.digest)) n += b.size
    for (const [digest, size] of this.reserved) if (!this.store.hasSync(digest)) n += size
    return n
  }

  /**
   * Makes room for a blob of `size` bytes and holds it for `digest` until
   * release(); a digest already reserved is not counted twice.
   */
  async reserve (digest: string, size: number): Promise<void> {
    const run = this.queue.then(async () => { await this.makeRoom(digest, size) })
    this.queue = run.catch(() => {}) // the caller gets this failure from `await run`; the queue only orders the next reservation
    await run
  }

  release (digest: string): void {
    this.reserved.delete(digest)
  }

  private async makeRoom (digest: string, size: number): Promise<void> {
    if (this.reserved.has(digest) || this.store.hasSync(digest)) return
    if (size > this.limitBytes) {
      throw new MirrorQuotaExceededError(`blob ${digest} is ${size} bytes, more than the mirror's disk quota of ${this.limitBytes} bytes: raise [mirror] disk_quota_bytes (0 = no quota)`)
    }
    const kept = this.keptByOthers()
    const candidates = (await this.store.list()).filter(b => !kept.has(b.digest)).sort((a, b) => a.lastAccess - b.lastAccess)
    for (const b of candidates) {
      if (await this.usedBytes() + size <= this.limitBytes) break
      await this.store.delete(b.digest)
    }
    const used = await this.usedBytes()
    if (used + size > this.limitBytes) {
      throw new MirrorQuotaExceededError(`blob ${digest} of ${size} bytes does not fit the mirror's disk quota of ${this.limitBytes} bytes (${used} bytes held by pulls in progress): retry later or raise [mirror] disk_quota_bytes`)
    }
    this.reserved.set(digest, size)
  }

  private keptByOthers (): Set<string> {
    const kept = new Set<string>()
    for (const [owner, digests] of this.store.owners()) {
      if (owner.startsWith(MIRROR_OWNER_PREFIX)) continue
      for (const d of digests) kept.add(d)
    }
    return kept
  }
}
