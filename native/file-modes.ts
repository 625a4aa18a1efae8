// Files and dirs whose mode must not depend on the agent's umask (0077):
// what a capsule's own users read (rootfs dirs, /etc/hosts), what other
// tools read (CDI specs), and temp files no one can plant a link at.
import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { chmod, mkdir, open, rename, rm } from 'node:fs/promises'

/** Flags for a new file: created now, never through a link planted at its name. */
export const NEW_FILE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW

/** mkdir (recursive as asked) and then exactly `mode` on `dir`, whatever the umask took. */
export async function mkdirWithMode (dir: string, mode: number, recursive = false): Promise<void> {
  await mkdir(dir, { mode, recursive })
  await chmod(dir, mode)
}

/** Writes a new file at exactly `mode` (fails if anything, a link included, is at `path`). */
export async function writeNewFile (path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const fh = await open(path, NEW_FILE_FLAGS, mode)
  try {
    await fh.writeFile(data)
    await fh.chmod(mode)
  } finally {
    await fh.close()
  }
}

/** Replaces `path` through a temp file beside it at a random name, at exactly `mode`. */
export async function replaceFile (path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const tmp = `${path}.${randomBytes(8).toString('hex')}.tmp`
  await writeNewFile(tmp, data, mode)
  try {
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}
