// The S3 component of the agent: starts the S3 listener from `[s3]` (a taken
// port or a refused bind is a warning, not a failed start), owns its API
// routes (`/v1/s3/keys`: the access keys, kept in the Raft state) and its
// metrics. agent.ts builds it with createS3Service and calls start()/stop().
import { randomBytes } from 'node:crypto'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { ApiError, type ApiServer } from '../api/server.js'
import type { S3Deps } from './deps.js'
import { S3Server } from './s3-server.js'
import type { S3Stats } from './stats.js'
import type { S3Repair } from './repair.js'

export interface S3Service {
  /** The endpoint's base URL, or null when off or not bound. */
  url: () => string | null
  start: () => Promise<void>
  stop: () => Promise<void>
  registerRoutes: (api: ApiServer) => void
  /** The endpoint's counters (for s3Metrics), undefined while it does not run. */
  stats: () => S3Stats | undefined
}

const CreateKeyBody = z.strictObject({
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'a bucket name: 3-63 of a-z 0-9 . -').optional(),
  readOnly: z.boolean().default(false)
})

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'

/** An access key id in AWS's shape: 20 upper-case letters and digits, starting BK. */
export function newAccessKey (): string {
  return 'BK' + [...randomBytes(18)].map(b => ALPHABET[b % 32]).join('')
}

export function createS3Service (deps: Omit<S3Deps, 'tmpDir'> & { dataDir: string, repair?: S3Repair }): S3Service {
  let server: S3Server | undefined
  const tmpDir = join(deps.dataDir, 's3-tmp')
  return {
    url: () => server?.url ?? null,
    async start () {
      if (!deps.config.enabled) return
      deps.repair?.start()
      deps.collector?.start()
      // Bodies of requests cut off by a crash: never part of an object.
      await rm(tmpDir, { recursive: true, force: true })
      await mkdir(tmpDir, { recursive: true, mode: 0o700 })
      const s = new S3Server({ ...deps, tmpDir })
      try {
        const url = await s.start()
        server = s
        deps.log.info({ url }, 'S3 endpoint listening')
      } catch (err) {
        deps.log.warn({ listen: deps.config.listen, err: (err as Error).message }, `S3 endpoint not started: ${(err as Error).message} (set [s3] listen to a free address, or enabled = false)`)
        await s.stop().catch(() => {}) // it never listened: nothing to release
      }
    },
    async stop () { await deps.repair?.stop(); await deps.collector?.stop(); await server?.stop() },
    registerRoutes (api) {
      api.route('POST', '/v1/s3/keys', async (req) => {
        const r = CreateKeyBody.safeParse(await req.body())
        if (!r.success) throw new ApiError(400, `s3 key create: ${r.error.issues[0]?.path.join('.') ?? ''} ${r.error.issues[0]?.message ?? ''}`.trim())
        const key = { accessKey: newAccessKey(), secret: randomBytes(30).toString('base64url'), readOnly: r.data.readOnly, created: Date.now(), ...(r.data.bucket !== undefined ? { bucket: r.data.bucket } : {}) }
        const res = await deps.write({ op: 's3.key.put', key }, req.signal)
        if (!res.ok) throw new ApiError(500, `s3 key create: ${res.reason}`)
        return { accessKey: key.accessKey, secretKey: key.secret, endpoint: server?.url ?? null, bucket: key.bucket ?? null, readOnly: key.readOnly }
      })
      api.route('GET', '/v1/s3/keys', async (req) => {
        await deps.barrier(AbortSignal.any([req.signal, AbortSignal.timeout(5000)]))
        return deps.table().listKeys().map(k => ({ accessKey: k.accessKey, bucket: k.bucket ?? null, readOnly: k.readOnly, created: new Date(k.created).toISOString() }))
      })
      api.route('DELETE', '/v1/s3/keys/:key', async (req) => {
        const accessKey = req.params.key ?? ''
        const res = await deps.write({ op: 's3.key.delete', accessKey: accessKey.slice(0, 32) }, req.signal)
        if (!res.ok) throw new ApiError(404, `no S3 access key ${accessKey.slice(0, 40)} (see bolt-agent s3 key list)`)
        return { accessKey, deleted: true }
      })
      // `object status`: S3 objects with fewer live copies than their bucket asks.
      api.route('GET', '/v1/s3/status', async (req) => {
        // Informational: without a leader to confirm through, this replica's state is still worth showing.
        await deps.barrier(AbortSignal.any([req.signal, AbortSignal.timeout(5000)])).catch(() => undefined)
        const c = deps.repair?.copies() ?? { objects: 0, below: [] }
        return { objects: c.objects, belowTarget: c.below, repaired: deps.repair?.repaired ?? 0 }
      })
      api.route('GET', '/v1/s3', async () => ({ url: server?.url ?? null, region: deps.config.region, stats: server === undefined ? null : { requests: Object.fromEntries(server.stats.requests), bytesIn: server.stats.bytesIn, bytesOut: server.stats.bytesOut } }))
    },
    stats: () => server?.stats
  }
}
