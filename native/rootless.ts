// Rootless mode: the ids a capsule's user namespace maps, from this user and
// its /etc/subuid and /etc/subgid ranges (newuidmap/newgidmap apply them).
import { readFile } from 'node:fs/promises'
import { userInfo } from 'node:os'
import type { RootlessIds } from './bundle/config.js'

/** /etc/subuid-style ranges for `user`, for a rootless capsule's extra ids. */
export async function subIdRange (file: string, user = userInfo().username): Promise<{ start: number, count: number } | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '') // no subuid file: no range for anyone
  for (const line of text.split('\n')) {
    const [u, start, count] = line.trim().split(':')
    if (u === user && start !== undefined && count !== undefined) return { start: Number(start), count: Number(count) }
  }
  return undefined
}

export async function rootlessIds (): Promise<RootlessIds> {
  const subuid = await subIdRange('/etc/subuid')
  const subgid = await subIdRange('/etc/subgid')
  return { uid: process.getuid?.() ?? 1000, gid: process.getgid?.() ?? 1000, ...(subuid !== undefined ? { subuid } : {}), ...(subgid !== undefined ? { subgid } : {}) }
}
