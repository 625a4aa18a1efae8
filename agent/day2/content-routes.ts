// API routes for images and objects beyond pull/put/get: `rmi` (forget an
// image on this node unless a capsule here uses it; the demo image, built
// here, leaves the runtime's image store), `object ls` (the
// cluster's object records) and `object rm` (forget one in the cluster and
// unpin this node's copy; other holders' copies become unreferenced and go
// under their disk quota).
import { z } from 'zod'
import { ApiError, type ApiServer } from '../api/server.js'
import type { RaftHost } from '../raft/raft-host.js'
import type { ContentHost } from '../content-host.js'
import { ObjectStore } from '../../p2p/content/objects.js'
import { OBJECT_META_PREFIX, ObjectMetaSchema } from '../object-location.js'
import { checkObjectId } from '../object-paths.js'
import { parseReference } from '../../p2p/content/reference.js'
import { freshOrStale } from '../api/fresh-read.js'
import type { Logger } from '../logger.js'
import type { NodeRuntime } from '../../native/index.js'
import { DEMO_REF } from '../demo-image.js'

/** Object records listed at most. */
export const MAX_OBJECTS_LISTED = 10_000
const RmiBody = z.strictObject({ ref: z.string().min(1).max(512) })

export function registerContentOpsRoutes (api: ApiServer, o: { raft: RaftHost, content: ContentHost, self: string, runtime: () => NodeRuntime | undefined, log: Logger }): void {
  api.route('POST', '/v1/images/remove', async (req) => {
    const body = RmiBody.safeParse(await req.body())
    if (!body.success) throw new ApiError(400, `bad rmi request: ${body.error.issues[0]?.message ?? ''}`)
    const ref = body.data.ref
    try { parseReference(ref) } catch (err) { throw new ApiError(400, (err as Error).message) }
    const user = o.raft.state.capsules.list().find(c => c.spec.image === ref && c.instances.some(i => i.node === o.self && ['pending', 'pulling', 'running'].includes(i.state)))
    if (user !== undefined) throw new ApiError(409, `${ref} is used by capsule ${user.spec.name} on this node (stop or rm it first)`)
    const rt = o.runtime()
    if (ref === DEMO_REF && rt !== undefined) {
      // Built here, never pulled: only the runtime holds it. A stopped capsule not yet removed still holds its image.
      const removed = await o.content.removeDemo(rt).catch((err: Error) => {
        if (err.name !== 'CapsuleStateError') throw err
        const holders = [...new Set(o.raft.state.capsules.list().filter(c => c.spec.image === ref && c.instances.some(i => i.node === o.self)).map(c => c.spec.name))]
        throw new ApiError(409, `${ref} is held by stopped capsule(s) ${holders.join(', ') || 'on this node'} (rm them first)`)
      })
      // The cluster may also hold a pushed image by that name: that one goes as any pulled image does.
      if (await o.content.puller.remove(ref) || removed) return { ref, removed: true }
      throw new ApiError(404, `no image ${ref} on this node (the demo image is built when a capsule first uses it)`)
    }
    if (!await o.content.puller.remove(ref)) throw new ApiError(404, `no image ${ref} on this node (see bolt-agent images)`)
    return { ref, removed: true }
  })
  api.route('GET', '/v1/objects', async (req, res) => {
    await freshOrStale(async (sig) => { await o.raft.node.readIndex(sig) }, req.signal, res, o.log)
    const rows = []
    for (const key of o.raft.state.keys(OBJECT_META_PREFIX, MAX_OBJECTS_LISTED)) {
      let raw: unknown
      try { raw = JSON.parse(o.raft.state.get(key) ?? '') } catch { o.log.warn({ key }, 'object ls: skipping a malformed object record'); continue }
      const meta = ObjectMetaSchema.safeParse(raw)
      if (meta.success) rows.push({ id: key.slice(OBJECT_META_PREFIX.length), ...meta.data })
    }
    return rows
  })
  api.route('DELETE', '/v1/objects/:id', async (req) => {
    const id = req.params.id ?? ''
    checkObjectId(id)
    const key = OBJECT_META_PREFIX + id
    if (o.raft.state.get(key) === undefined) throw new ApiError(404, `no object ${id} in the cluster (see bolt-agent object ls)`)
    const r = await o.raft.write({ op: 'delete', key }, req.signal)
    if (!r.ok) throw new ApiError(409, r.reason)
    await o.content.store.unpin(ObjectStore.owner(id))
    return { id, removed: true }
  })
}
