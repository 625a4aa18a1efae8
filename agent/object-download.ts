// `bolt-agent object get ID DEST` on the client side: the agent streams the
// object's bytes (GET /v1/objects/:id) and this process writes DEST, as the
// user who runs the CLI. The agent runs as root; letting it write a path an
// API caller names would let any token holder write any file.
import { randomBytes } from 'node:crypto'
import { open, rename, rm } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { AgentRequestError, type ApiClient } from './api/client.js'
import { ApiError } from './api/server.js'
import { UserError } from './errors.js'
import { OBJECT_HEADER, ObjectGetHeaderSchema, type ObjectGetHeader } from './object-location.js'
import { checkObjectDest } from './object-paths.js'

export class ObjectDownloadError extends UserError {
  override name = 'ObjectDownloadError'
}

/** Fetches object `id` through the agent into `dest` (written to a temp file beside it, then renamed). */
export async function downloadObject (api: ApiClient, id: string, destArg: string, signal?: AbortSignal): Promise<ObjectGetHeader & { dest: string }> {
  const dest = resolve(destArg)
  try {
    await checkObjectDest(dest)
  } catch (err) {
    if (err instanceof ApiError) throw new UserError(err.message)
    throw err
  }
  const res = await api.raw('GET', `/v1/objects/${encodeURIComponent(id)}`, undefined, signal)
  if (!res.ok) {
    const text = await res.text()
    let v: { error?: string, name?: string } = {}
    try { v = JSON.parse(text) as typeof v } catch { v = { error: text } }
    throw new AgentRequestError(res.status, v.error ?? `HTTP ${res.status}`, v.name)
  }
  let raw: unknown = null
  try { raw = JSON.parse(res.header(OBJECT_HEADER) ?? 'null') } catch { /* not JSON: refused by the schema just below */ }
  const header = ObjectGetHeaderSchema.safeParse(raw)
  if (!header.success) {
    res.discard()
    throw new ObjectDownloadError(`object get: the agent's answer has no valid ${OBJECT_HEADER} header (is the agent older than this CLI? upgrade it)`)
  }
  const tmp = join(dirname(dest), `.${basename(dest)}.${randomBytes(4).toString('hex')}.part`)
  const fh = await open(tmp, 'wx').catch((err: Error) => { throw new UserError(`object get: cannot write in ${dirname(dest)}: ${err.message}`) })
  try {
    let written = 0
    for await (const chunk of res.body) {
      let off = 0
      while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten
      written += chunk.length
    }
    if (written !== header.data.size) throw new ObjectDownloadError(`object get: received ${written} of ${header.data.size} bytes of ${id} (the agent stopped sending); try again`)
    await fh.sync()
    await fh.close()
    await rename(tmp, dest)
  } catch (err) {
    await fh.close().catch(() => undefined) // already closed when the failure came after the sync; the error below is rethrown
    await rm(tmp, { force: true })
    throw err
  }
  return { ...header.data, dest }
}
