// Durable file writes: fsync a directory after a rename, and replace a file
// atomically (temp file, fsync, rename, fsync the directory).
import { randomBytes } from 'node:crypto'
import { mkdir, open, rename, unlink, writeFile, type FileHandle } from 'node:fs/promises'
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

/** Write to a temp file in `tmpDir`, fsync, rename over `file`, fsync the directory. */
export async function writeFileAtomic (file: string, data: Uint8Array, tmpDir: string): Promise<void> {
  await mkdir(tmpDir, { recursive: true })
  const tmp = join(tmpDir, `w.${randomBytes(6).toString('hex')}`)
  try {
    await writeFile(tmp, data, { flush: true })
    await rename(tmp, file)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
  await fsyncDir(join(file, '..'))
}
