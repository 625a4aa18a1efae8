// The API routes for images, objects and GPUs: `pull`, `images`,
// `object put|get`, `gpu`. They use the content host and Raft, not the
// capsules; CapsuleHost registers the capsule routes beside them.
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { z } from 'zod'
import { gpuReport } from '../native/index.js'
import { ApiError, type ApiServer } from './api/server.js'
import type { Config } from './config.js'
import type { ContentHost } from './content-host.js'
import type { Logger } from './logger.js'
import { MAX_OBJECT_HOLDERS, OBJECT_HEADER, type ObjectGetHeader } from './object-location.js'
import { checkDestInRoot, checkObjectId, checkObjectSource } from './object-paths.js'
import type { RaftHost } from './raft/raft-host.js'

export interface ContentRoutesInit {
  content: ContentHost
  raft: Pick<RaftHost, 'write' | 'read' | 'state'>
  config: Config['objects']
  log: Logger
}

const PullBody = z.object({ ref: z.string().min(1).max(1024) })
const PutObjectBody = z.object({ path: z.string().startsWith('/').max(4096), replicas: z.number().int().min(0).max(255).default(2) })
const GetObjectBody = z.object({ dest: z.string().startsWith('/').max(4096) })

function parse<T> (schema: z.ZodType<T>, raw: unknown, what: string): T {
  const r = schema.safeParse(raw)
  if (!r.success) throw new ApiError(400, `bad ${what}: ${r.error.issues[0]?.path.join('.') ?? ''}: ${r.error.issues[0]?.message ?? ''}`)
  return r.data
}

/** An object no holder has is the caller's 404, not the agent's 500. */
function objectNotFound (err: unknown): never {
  if ((err as Error).name === 'ObjectNotFoundError') throw new ApiError(404, (err as Error).message)
  throw err
}

export function registerContentRoutes (api: ApiServer, o: ContentRoutesInit): void {
  api.route('POST', '/v1/images/pull', async (req, res) => {
    const { ref } = parse(PullBody, await req.body(), 'pull request (expected {"ref": IMAGE})')
    res.writeHead(200, { 'content-type': 'application/x-ndjson' })
    try {
      const done = await o.content.pull(ref, (p) => { res.write(JSON.stringify({ event: 'progress', ...p }) + '\n') }, req.signal)
      res.end(JSON.stringify({ event: 'done', ref: done.ref, digest: done.digest, size: done.size, bytesFromPeers: done.bytesFromPeers, bytesFromRegistry: done.bytesFromRegistry, bytesLocal: done.bytesLocal }) + '\n')
    } catch (err) {
      // The status line is out: the failure is the stream's last event.
      res.end(JSON.stringify({ event: 'error', error: (err as Error).message }) + '\n')
    }
    return undefined
  })
  api.route('GET', '/v1/images', async () => await o.content.puller.images())
  api.route('POST', '/v1/objects', async (req) => {
    const body = parse(PutObjectBody, await req.body(), 'object put (expected {"path": ABSOLUTE-PATH, "replicas": N})')
    await checkObjectSource(body.path)
    const r = await o.content.objects.putObject(body.path, { replicas: body.replicas, signal: req.signal })
    // Object metadata goes into the Raft state, so any member can list it.
    // Without it the bytes are stored but the cluster cannot list them: say so (a second put of the same file costs nothing).
    await o.raft.write({ op: 'put', key: `objects/${r.id}`, value: JSON.stringify({ size: r.size, chunks: r.chunks, replicas: r.replicas }) }, req.signal).catch((err: Error) => {
      o.log.warn({ object: r.id, err: err.message }, 'object stored but not recorded in the cluster state')
      throw new ApiError(503, `object ${r.id} is stored but could not be recorded in the cluster state (${err.message}); put it again once the cluster has a leader`)
    })
    return r
  })
  // The bytes of an object, streamed: `bolt-agent object get ID DEST`
  // writes DEST itself, as the user who runs it. How the object was found
  // rides in the x-bolt-object header (JSON: id, size, bytesFromPeers,
  // bytesLocal, locatedBy, asked: its first MAX_OBJECT_HOLDERS, so the
  // header stays far below HTTP clients' 16 KiB limit in large clusters).
  api.route('GET', '/v1/objects/:id', async (req, res) => {
    const id = req.params.id ?? ''
    checkObjectId(id)
    const { manifest, ...got } = await o.content.fetchObject(id, o.raft, req.signal).catch(objectNotFound)
    const header: ObjectGetHeader = { ...got, asked: got.asked.slice(0, MAX_OBJECT_HOLDERS) }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(got.size), [OBJECT_HEADER]: JSON.stringify(header) })
    await pipeline(Readable.from(o.content.objects.readObject(manifest)), res, { signal: req.signal })
    return undefined
  })
  // The agent writes the file itself only under [objects] dest_root: it runs as root.
  api.route('POST', '/v1/objects/:id/get', async (req) => {
    const id = req.params.id ?? ''
    checkObjectId(id)
    const body = parse(GetObjectBody, await req.body(), 'object get (expected {"dest": ABSOLUTE-PATH})')
    const dest = await checkDestInRoot(body.dest, o.config.dest_root)
    return await o.content.getObject(id, dest, o.raft, req.signal).catch(objectNotFound)
  })
  api.route('GET', '/v1/gpu', async () => await gpuReport())
}
