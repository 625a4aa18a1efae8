// Output of a capsule's run kept past its removal, for `logs --previous`:
// the last log file of the run before a restart (or a new placement) on
// the same node, one file per runtime name, pruned once its instance is gone.
import { copyFile, mkdir, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { readLogs, type LogRecord } from './logs.js'

export class PreviousLogs {
  constructor (private readonly dir: string, private readonly onError: (name: string, err: Error) => void) {}

  /** Where the output of a removed run of `name` is kept (its last log file). */
  private pathOf (name: string): string {
    return join(this.dir, `${name}.log`)
  }

  /** Keeps `logFile`, the last output of `name`, before the run is removed and started again. */
  async keep (name: string, logFile: string): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    await copyFile(logFile, this.pathOf(name)).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') this.onError(name, err) })
  }

  /** The output kept by keep(), or undefined when none was. */
  async read (name: string, opts: { tail?: number, since?: number } = {}): Promise<AsyncIterable<LogRecord> | undefined> {
    const path = this.pathOf(name)
    if (!await stat(path).then(() => true, () => false)) return undefined
    return readLogs(path, { maxFiles: 1, ...opts })
  }

  /** Forgets kept output of runs `keep` says no (their instances are gone for good). */
  async prune (keep: (name: string) => boolean): Promise<void> {
    for (const f of await readdir(this.dir).catch(() => [] as string[])) { // none kept yet: nothing to prune
      if (f.endsWith('.log') && !keep(f.slice(0, -4))) await rm(join(this.dir, f), { force: true })
    }
  }
}
