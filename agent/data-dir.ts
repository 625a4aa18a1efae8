// Guards on the data dir before an agent starts: one agent per data dir, and
// the command (init, join, start) must fit what the dir holds.
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { API_FILE } from './api/client.js'
import type { ClusterFile } from './cluster-file.js'
import { DataDirError } from './errors.js'

/** `--data`'s default: env BOLT_DATA, else $XDG_DATA_HOME/bolt-agent, else ~/.local/share/bolt-agent. */
export function defaultDataDir (): string {
  const fromEnv = process.env.BOLT_DATA
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv
  const xdg = process.env.XDG_DATA_HOME
  if (xdg !== undefined && xdg !== '') return join(xdg, 'bolt-agent')
  return join(homedir(), '.local', 'share', 'bolt-agent')
}

/** Throws when another live agent wrote the data dir's API file. */
export async function refuseSecondAgent (dataDir: string): Promise<void> {
  try {
    const api = JSON.parse(await readFile(join(dataDir, API_FILE), 'utf8')) as { pid?: number }
    if (typeof api.pid === 'number' && api.pid !== process.pid && isAlive(api.pid)) {
      throw new DataDirError(`an agent (pid ${api.pid}) is already running on ${dataDir}; stop it first or use another --data`)
    }
  } catch (err) {
    if (err instanceof DataDirError) throw err
    // No api.json (no agent ran, or it stopped cleanly) or an unreadable one
    // (a crash mid-write): neither names a live agent, so this one may start.
  }
}

/**
 * `start` needs a dir that joined a cluster and did not leave it; `init` and
 * `join` need one that belongs to no cluster now. Returns the file `start`
 * resumes from (undefined for init and join).
 */
export function checkDataDirMode (mode: 'init' | 'join' | 'start', dataDir: string, existing: ClusterFile | undefined): ClusterFile | undefined {
  if (mode === 'start') {
    if (existing === undefined) throw new DataDirError(`${dataDir} has not joined a cluster (run \`bolt-agent init\` or \`bolt-agent join ADDR --token T\` first)`)
    if (existing.left) throw new DataDirError(`this node left its cluster; join again with \`bolt-agent join ADDR --token T --data ${dataDir}\``)
    return existing
  }
  if (existing !== undefined && !existing.left) {
    throw new DataDirError(`${dataDir} already belongs to cluster ${existing.clusterId}; restart it with \`bolt-agent start --data ${dataDir}\` or use another --data`)
  }
  return undefined
}

function isAlive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}
