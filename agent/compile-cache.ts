// Node's module compile cache: V8's compiled code for the agent's modules
// (libp2p and the rest) kept on disk, so a later start skips compiling them.
// Measured on a 2-core machine through the launcher, 6 starts of `init` per
// batch, batches alternating: CPU from start to ready fell by about a sixth
// (batch medians 0.95 and 1.11 CPU-s without, 0.76 and 0.90 with).
//
// The directory is $NODE_COMPILE_CACHE when set, else
// $XDG_CACHE_HOME/bolt-agent/compile-cache (~/.cache/… without it): about
// 6 MB. Not Node's default under the shared tmpdir: the agent often runs as
// root, and code read from a directory another local user could have made
// first would run as root. NODE_DISABLE_COMPILE_CACHE=1 turns it off.
// Entries are checked against their source file, so a cache left by another
// build or Node version is not used, and a cache that cannot be written
// costs nothing: the code is compiled as before.
import module from 'node:module'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { makeDirsSync } from './make-dirs.js'

/** Where the cache goes, from the environment. */
export function compileCacheDir (env: NodeJS.ProcessEnv = process.env): string {
  if (env.NODE_COMPILE_CACHE !== undefined && env.NODE_COMPILE_CACHE !== '') return env.NODE_COMPILE_CACHE
  const xdg = env.XDG_CACHE_HOME
  return join(xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.cache'), 'bolt-agent', 'compile-cache')
}

/** Turns the cache on for this process; returns its directory, or undefined where it is off or unavailable. */
export function enableCompileCache (): string | undefined {
  // Absent before Node 22.1.
  if (typeof module.enableCompileCache !== 'function') return undefined
  if (process.env.NODE_DISABLE_COMPILE_CACHE !== undefined) return undefined
  const dir = compileCacheDir()
  try {
    // Made here, not by Node: see make-dirs.ts (HOME=/proc hung every command).
    makeDirsSync(dir)
  } catch {
    return undefined
  }
  return module.enableCompileCache(dir).directory
}

/**
 * Writes what this process compiled so far. Node writes the cache when the
 * process exits; an agent runs for weeks and may end by kill -9, so it
 * writes once when it is ready as well.
 */
export function flushCompileCache (): void {
  if (typeof module.flushCompileCache === 'function') module.flushCompileCache()
}
