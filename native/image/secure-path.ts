// Path handling for untrusted layer entries: names are split into clean
// components, and every lookup under a rootfs resolves symlinks the way the
// kernel would inside the capsule (chroot-like), so no lookup leaves the root.
import { lstat, readlink } from 'node:fs/promises'
import { join } from 'node:path'
import { PathTraversalError, SymlinkEscapeError } from '../errors.js'

/** Linux's own limit on symlinks followed in one lookup (ELOOP). */
export const MAX_SYMLINK_FOLLOWS = 40

/**
 * Splits a tar entry name into components, rejecting any `..` (there is no
 * legitimate reason for one in a layer) and dropping `.` and empty parts.
 */
export function entryComponents (name: string): string[] {
  if (name.includes('\0')) throw new PathTraversalError(`layer entry name contains a NUL byte: ${JSON.stringify(name)}`)
  const parts = name.split('/').filter(p => p !== '' && p !== '.')
  if (parts.includes('..')) throw new PathTraversalError(`layer entry ${JSON.stringify(name)} climbs out with "..": refusing the layer`)
  return parts
}

/**
 * Checks that a symlink stored at `entryParts` with `target` stays inside the
 * rootfs when resolved lexically from its own directory (absolute targets are
 * rooted at the capsule's `/`).
 */
export function assertSymlinkInside (entryParts: string[], target: string): void {
  if (target.includes('\0')) throw new SymlinkEscapeError(`symlink ${entryParts.join('/')} has a NUL byte in its target`)
  const stack = target.startsWith('/') ? [] : entryParts.slice(0, -1)
  for (const p of target.split('/')) {
    if (p === '' || p === '.') continue
    if (p === '..') {
      if (stack.length === 0) {
        throw new SymlinkEscapeError(`symlink /${entryParts.join('/')} -> ${target} points outside the image's root: refusing the layer`)
      }
      stack.pop()
    } else {
      stack.push(p)
    }
  }
}

/**
 * Resolves `parts` under `root`, following symlinks in every component but the
 * last (the last too when `followLast`), each resolved relative to `root` as
 * the capsule would see it. Returns a host path that is always inside `root`;
 * components that do not exist yet are appended as they are.
 */
export async function resolveInRoot (root: string, parts: string[], followLast = false): Promise<string> {
  const resolved: string[] = []
  const todo = [...parts]
  let follows = 0
  while (todo.length > 0) {
    const part = todo.shift() as string
    if (part === '' || part === '.') continue
    if (part === '..') { resolved.pop(); continue }
    const host = join(root, ...resolved, part)
    const isLast = todo.length === 0
    if (isLast && !followLast) { resolved.push(part); break }
    let st
    try {
      st = await lstat(host)
    } catch {
      resolved.push(part) // not there yet: later components cannot be symlinks either
      continue
    }
    if (!st.isSymbolicLink()) { resolved.push(part); continue }
    if (++follows > MAX_SYMLINK_FOLLOWS) throw new SymlinkEscapeError(`too many symlinks resolving /${parts.join('/')} in the rootfs`)
    const target = await readlink(host)
    if (target.startsWith('/')) resolved.length = 0
    todo.unshift(...target.split('/'))
  }
  return join(root, ...resolved)
}
