// Checks on the paths `object put` and `object get` are given, made before
// any work: one clear line instead of an errno (for get, after the whole
// object was fetched and the final rename failed). The agent runs as root, so
// a `dest` it writes for an API caller must lie under `[objects] dest_root`;
// the CLI instead receives the bytes and writes DEST as its own user.
import { realpath, stat } from 'node:fs/promises'
import { basename, dirname, join, sep } from 'node:path'
import { ApiError } from './api/server.js'

/** Object ids are manifest digests; anything else never reaches the blob store (whose paths they name). */
export const OBJECT_ID_RE = /^sha256:[0-9a-f]{64}$/

export function checkObjectId (id: string): void {
  if (!OBJECT_ID_RE.test(id)) throw new ApiError(400, `object id ${JSON.stringify(id.slice(0, 80))} is not sha256:<64 hex digits> (as \`object put\` prints it)`)
}

function code (err: unknown): string | undefined { return (err as NodeJS.ErrnoException).code }

/** `object put FILE`: a regular file this agent can read. */
export async function checkObjectSource (file: string): Promise<void> {
  const st = await stat(file).catch((err: unknown) => {
    if (code(err) === 'ENOENT') throw new ApiError(400, `object put: ${file} does not exist`)
    throw new ApiError(400, `object put: cannot read ${file}: ${(err as Error).message}`)
  })
  if (!st.isFile()) throw new ApiError(400, `object put: ${file} is ${st.isDirectory() ? 'a directory' : 'not a regular file'}; give one file`)
}

/** `object get ID DEST`: DEST is a file path (new or to replace) in a directory that exists. */
export async function checkObjectDest (dest: string): Promise<void> {
  // ENOTDIR: a parent is a file, said below.
  const st = await stat(dest).catch((err: unknown) => { if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return undefined; throw new ApiError(400, `object get: cannot use ${dest}: ${(err as Error).message}`) })
  if (st?.isDirectory() === true) throw new ApiError(400, `object get: ${dest} is a directory; give the path of the file to write`)
  const dir = dirname(dest)
  const parent = await stat(dir).catch((err: unknown) => { if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return undefined; throw new ApiError(400, `object get: cannot use the directory ${dir}: ${(err as Error).message}`) })
  if (parent === undefined) throw new ApiError(400, `object get: the directory ${dir} does not exist`)
  if (!parent.isDirectory()) throw new ApiError(400, `object get: ${dir} is not a directory`)
}

/**
 * The API's `object get` with a `dest`: the agent (root) writes only under
 * `root` (`[objects] dest_root`), never where the caller chose. The parent
 * directory is resolved with its symlinks, so a link inside the root that
 * points out of it is refused too. Returns the path to write (the resolved
 * directory, and DEST's own name, which rename replaces without following).
 */
export async function checkDestInRoot (dest: string, root: string | undefined): Promise<string> {
  const cli = 'use `bolt-agent object get ID DEST`, which writes DEST as the user who runs it'
  if (root === undefined) throw new ApiError(403, `object get: this agent writes object files for API callers only under [objects] dest_root, which is not set; ${cli}`)
  await checkObjectDest(dest)
  const realRoot = await realpath(root).catch((err: Error) => { throw new ApiError(500, `object get: [objects] dest_root ${root} cannot be used: ${err.message}`) })
  const realDir = await realpath(dirname(dest)).catch((err: Error) => { throw new ApiError(400, `object get: cannot resolve ${dirname(dest)}: ${err.message}`) })
  const inside = realDir === realRoot || realDir.startsWith(realRoot.endsWith(sep) ? realRoot : realRoot + sep)
  if (!inside) throw new ApiError(403, `object get: ${dest} is outside [objects] dest_root (${root}); the agent writes nowhere else for API callers (${cli})`)
  return join(realDir, basename(dest))
}
