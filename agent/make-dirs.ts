// `mkdir -p` that fails instead of spinning. Node's recursive mkdir retries
// forever at full CPU where mkdir answers ENOENT inside a directory that
// exists, as it does under /proc: `--data /proc/x` hung the agent. This
// walks up to the first directory that exists and makes the rest one level
// at a time, so such a path fails with the mkdir error.
import { existsSync, mkdirSync, statSync } from 'node:fs'
import { dirname } from 'node:path'

/** Makes `dir` and its missing parents (each with `mode`); throws the first mkdir error, or ENOTDIR when `dir` is a file. */
export function makeDirsSync (dir: string, mode = 0o700): void {
  const missing: string[] = []
  for (let d = dir; !existsSync(d); d = dirname(d)) {
    if (dirname(d) === d) break
    missing.push(d)
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d, { mode })
    } catch (err) {
      // Made meanwhile by another process: fine.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
  }
  if (!statSync(dir).isDirectory()) throw Object.assign(new Error(`ENOTDIR: ${dir} is not a directory`), { code: 'ENOTDIR' })
}
