// What an agent keeps about its cluster in DATA/cluster.json (mode 0600): the
// cluster secrets, this node's name and role, its SWIM incarnation, members
// to reconnect to on `start`, and peers evicted from the cluster. Written
// to a temp file, fsync'd and renamed, so a crash leaves the old or the new.
import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { MAX_EVICTED } from '../p2p/admission/secrets.js'

export const CLUSTER_FILE = 'cluster.json'

const Hex = (n: number): z.ZodString => z.string().length(n * 2).regex(/^[0-9a-f]+$/)

export const ClusterFileSchema = z.object({
  version: z.literal(1),
  clusterId: Hex(8),
  clusterKey: Hex(32),
  joinSecret: Hex(32),
  secretVersion: z.number().int().nonnegative(),
  name: z.string(),
  role: z.enum(['server', 'client']),
  incarnation: z.number().int().nonnegative(),
  /** Known members' dialable addresses (with /p2p/), refreshed while running. */
  seeds: z.array(z.string()).max(64),
  /** Version of clusterKey (1 until the first evict) and the one before it. */
  keyVersion: z.number().int().min(1).default(1),
  previousKey: Hex(32).optional(),
  /**
   * Peer ids evicted, oldest first (admission keeps MAX_EVICTED). Files
   * before evict had `revoked`, grown by every leave: it is no longer read.
   */
  evicted: z.array(z.string().max(128)).max(MAX_EVICTED).default([]),
  /** True once this node has left: `start` then refuses (join again with a token). */
  left: z.boolean().default(false)
})
export type ClusterFile = z.infer<typeof ClusterFileSchema>

export class NotInClusterError extends Error {
  override name = 'NotInClusterError'
}

export async function readClusterFile (dataDir: string): Promise<ClusterFile | undefined> {
  let text: string
  try {
    text = await readFile(join(dataDir, CLUSTER_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  const parsed = ClusterFileSchema.safeParse(JSON.parse(text))
  if (!parsed.success) throw new Error(`${join(dataDir, CLUSTER_FILE)} is damaged (${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}); move it away and join again`)
  return parsed.data
}

/**
 * Replaces `file` with `data` at `mode`: a temp file beside it at a name no
 * one can guess, created with O_EXCL|O_NOFOLLOW (never through a planted
 * link), fsync'd and renamed over it.
 */
export async function writeAtomic (file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const tmp = `${file}.tmp-${randomBytes(8).toString('hex')}`
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode)
  try {
    try {
      await fh.writeFile(data)
      await fh.chmod(mode) // the umask may have taken bits the caller asked for
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, file)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}

/** Serializes writes so concurrent updates never interleave. */
export class ClusterFileStore {
  private chain: Promise<void> = Promise.resolve()
  constructor (private readonly dataDir: string, private current: ClusterFile) {}

  get (): ClusterFile { return this.current }

  async update (patch: Partial<ClusterFile>): Promise<void> {
    this.current = { ...this.current, ...patch }
    const snapshot = JSON.stringify(this.current, null, 2) + '\n'
    this.chain = this.chain.then(async () => {
      await mkdir(this.dataDir, { recursive: true, mode: 0o700 })
      await writeAtomic(join(this.dataDir, CLUSTER_FILE), snapshot)
    })
    await this.chain
  }
}
