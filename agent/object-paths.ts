// Checks on the paths `object put` and `object get` are given, made before
// any work: one clear line instead of an errno (for get, after the whole
// object was fetched and the final rename failed).
import { stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { ApiError } from './api/server.js'

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
  const parent = await stat(dir).catch(() => undefined)
  if (parent === undefined) throw new ApiError(400, `object get: the directory ${dir} does not exist`)
  if (!parent.isDirectory()) throw new ApiError(400, `object get: ${dir} is not a directory`)
}
