// Durable file writes: fsync a directory after a rename, and replace a file
// atomically (temp file, fsync, rename, fsync the directory).
import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'

export async function fsyncDir (dir: string): Promise<void> {
  let fh: FileHandle | undefined
  try {
    fh = await open(dir, 'r')
    await fh.sync()
  } finally {
    await fh?.close()
  }
}

/** Flags for a new temp file: created here and now, never through a link someone planted at its name. */
export const NEW_FILE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW

/** Write to a temp file in `tmpDir` (random name, O_EXCL|O_NOFOLLOW, 0600), fsync, rename over `file`, fsync the directory. */
export async function writeFileAtomic (file: string, data: Uint8Array, tmpDir: string): Promise<void> {
  await mkdir(tmpDir, { recursive: true, mode: 0o700 })
  const tmp = join(tmpDir, `w.${randomBytes(8).toString('hex')}`)
  const fh = await open(tmp, NEW_FILE_FLAGS, 0o600)
  try {
    try {
      await fh.writeFile(data)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, file)
  } catch (err) {
    await unlink(tmp).catch(() => {}) // gone if the rename went through; the write's own error below is what the caller needs
    throw err
  }
  await fsyncDir(join(file, '..'))
}
