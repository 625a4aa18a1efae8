// Where the agents running on this machine for this user are listed, so a
// client command finds the one agent without --data (`bolt-agent dev` puts
// its data dir in a fresh temp dir). Each agent writes RUNTIME/PID.json with
// its data dir on start and removes it on stop; the token stays in the data
// dir's api.json (0600), so an entry holds no secret. Client commands load
// this file, so it imports no zod (see api/client.ts): entries are checked
// by hand in parseLocalAgent.
import { lstat, mkdir, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** At most this many entries are read: a directory full of junk must not make every client command slow. */
export const MAX_LOCAL_AGENTS = 256

export interface LocalAgent { pid: number, dataDir: string, url: string }

/** An entry's JSON value when it is one an agent wrote, else undefined. */
export function parseLocalAgent (v: unknown): LocalAgent | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined
  const { pid, dataDir, url, ...rest } = v as Record<string, unknown>
  if (Object.keys(rest).length > 0) return undefined
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) return undefined
  if (typeof dataDir !== 'string' || dataDir === '' || dataDir.length > 4096) return undefined
  if (typeof url !== 'string' || url.length > 512) return undefined
  return { pid, dataDir, url }
}

export class RuntimeDirError extends Error {
  override name = 'RuntimeDirError'
}

/**
 * The per-user runtime dir: $XDG_RUNTIME_DIR/bolt-agent (systemd's 0700
 * per-user dir), else /run/bolt-agent for root, else TMPDIR/bolt-agent-UID.
 */
export function runtimeDir (): string {
  const xdg = process.env.XDG_RUNTIME_DIR
  if (xdg !== undefined && xdg !== '') return join(xdg, 'bolt-agent')
  const uid = process.getuid?.() ?? 0
  return uid === 0 ? '/run/bolt-agent' : join(tmpdir(), `bolt-agent-${uid}`)
}

/**
 * Creates the dir 0700, or checks that the one there is a real dir of ours
 * that nobody else can write: in a shared /tmp another user could have made
 * it first to feed us a data dir of their choosing.
 */
async function ownDir (dir: string, create: boolean): Promise<boolean> {
  if (create) await mkdir(dir, { recursive: true, mode: 0o700 })
  let st
  try { st = await lstat(dir) } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
  const uid = process.getuid?.()
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) {
    throw new RuntimeDirError(`${dir} is not a directory owned by this user and writable only by it; remove it (bolt-agent lists running agents there)`)
  }
  return true
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}

/** Lists this agent in the runtime dir. */
export async function registerLocalAgent (entry: LocalAgent, dir = runtimeDir()): Promise<void> {
  await ownDir(dir, true)
  const { writeAtomic } = await import('./cluster-file.js')
  await writeAtomic(join(dir, `${entry.pid}.json`), JSON.stringify(entry) + '\n')
}

export async function unregisterLocalAgent (pid: number, dir = runtimeDir()): Promise<void> {
  await rm(join(dir, `${pid}.json`), { force: true })
}

/**
 * The agents listed whose process still runs. Entries of agents that died
 * without stopping (kill -9) are skipped, and removed when we may.
 */
export async function listLocalAgents (dir = runtimeDir()): Promise<LocalAgent[]> {
  if (!await ownDir(dir, false)) return []
  const names = (await readdir(dir)).filter(n => /^\d+\.json$/.test(n)).slice(0, MAX_LOCAL_AGENTS)
  const found: LocalAgent[] = []
  for (const n of names) {
    const text = await readFile(join(dir, n), 'utf8').catch(() => undefined) // removed while we read: its agent stopped
    if (text === undefined) continue
    let parsed: LocalAgent | undefined
    try { parsed = parseLocalAgent(JSON.parse(text)) } catch { parsed = undefined } // not JSON: not an agent we can use
    if (parsed === undefined || `${parsed.pid}.json` !== n) continue
    if (!alive(parsed.pid)) { await rm(join(dir, n), { force: true }).catch(() => undefined); continue } // best effort: a stale entry is skipped anyway
    found.push(parsed)
  }
  return found.sort((a, b) => a.pid - b.pid)
}
