// The data dir holds the cluster secrets, the API token, Raft data (capsule
// env included) and blobs: only the agent's user may enter it. A dir made
// by someone else is refused; one open to others is closed to 0700, and the
// agent's umask keeps every file it creates from other users.
import { chmod, stat } from 'node:fs/promises'
import { DataDirError } from './errors.js'

/** The agent's umask: files and dirs it creates are its user's alone (modes capsules need are set explicitly). */
export const AGENT_UMASK = 0o077

/** The data dir's mode. */
export const DATA_DIR_MODE = 0o700

/**
 * Refuses a data dir not owned by this process's user; sets one that group
 * or others may use to 0700. Returns the line to log when it changed the mode.
 */
export async function secureDataDir (dir: string, uid = process.geteuid?.()): Promise<string | undefined> {
  const st = await stat(dir)
  if (uid !== undefined && st.uid !== uid) {
    throw new DataDirError(`the data dir ${dir} belongs to uid ${st.uid}, not to this agent's user (uid ${uid}): chown it to the agent's user or choose another --data`)
  }
  const mode = st.mode & 0o7777
  if (mode === DATA_DIR_MODE) return undefined
  await chmod(dir, DATA_DIR_MODE)
  return `the data dir ${dir} was mode ${mode.toString(8).padStart(4, '0')}, open to other users; set it to 0700`
}
