// Runtime limits for small machines (profile = "edge"). V8 sizes its heap
// spaces when the process starts, so the agent, once it has read its config,
// replaces its own process image (process.execve: same pid, same stdio) with
// these flags set — no launcher to configure, and no second process waiting.
// `edge.tune_runtime = false` keeps the plain runtime. What each costs:
import type { Config } from './config.js'
import { withoutTokenArgs } from './token-source.js'

/**
 * - `--max-semi-space-size=1`: the young generation is 3 × this (MiB). V8's
 *   default grows it to 16 MiB per semi-space, which an idle agent fills with
 *   garbage between scavenges and keeps resident (measured: about 25 MB of
 *   RSS). Costs more frequent scavenges under load.
 * - `--optimize-for-size`: V8 prefers smaller heap and code over speed
 *   (fewer inline caches kept, less aggressive heap growth).
 * - `--max-old-space-size=192`: an upper bound on the old generation, with
 *   GC heuristics that keep the heap tight well below it; an agent that
 *   needs more fails with a heap-out-of-memory error instead of swapping a
 *   small machine to death.
 */
export const EDGE_NODE_FLAGS = ['--max-semi-space-size=1', '--optimize-for-size', '--max-old-space-size=192']

/**
 * - `MALLOC_ARENA_MAX=2`: glibc gives each thread that allocates its own
 *   malloc arena; QUIC, libuv and V8 helper threads would leave several
 *   partly used arenas resident.
 * - `UV_THREADPOOL_SIZE=2`: libuv's pool (file system, DNS, crypto) has 4
 *   threads by default; an idle edge agent needs few.
 */
export const EDGE_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2', UV_THREADPOOL_SIZE: '2' }

/** Set in the replaced process, so it does not replace itself again. */
export const EDGE_RUNTIME_MARK = 'BOLT_EDGE_RUNTIME'

type Execve = (file: string, args: string[], env: NodeJS.ProcessEnv) => never

/** The node flags and environment this process runs with, for reports: undefined when not re-executed. */
export function edgeRuntime (): { flags: string[], env: Record<string, string> } | undefined {
  if (process.env[EDGE_RUNTIME_MARK] === undefined) return undefined
  return { flags: process.execArgv.filter(f => EDGE_NODE_FLAGS.includes(f)), env: { ...EDGE_ENV } }
}

/**
 * Replaces this process with one running the edge runtime flags, when the
 * config asks for it and this is not already that process. Call it before
 * the agent opens anything (files, sockets, threads). Returns where the
 * platform has no execve (then the agent runs on the plain runtime).
 */
export function reexecForEdge (config: Config, execve = (process as unknown as { execve?: Execve }).execve): void {
  if (config.profile !== 'edge' || !config.edge.tune_runtime) return
  if (process.env[EDGE_RUNTIME_MARK] !== undefined || execve === undefined) return
  const script = process.argv[1]
  if (script === undefined) return
  // User flags (execArgv) come last so they win over ours. A --token value
  // never reaches the new argv (readable by every local user): the caller
  // hands the token over in the environment (BOLT_TOKEN).
  const args = [process.execPath, ...EDGE_NODE_FLAGS, ...process.execArgv, script, ...withoutTokenArgs(process.argv.slice(2))]
  // The user's own environment wins over ours too.
  execve.call(process, process.execPath, args, { ...EDGE_ENV, ...process.env, [EDGE_RUNTIME_MARK]: '1' })
}
