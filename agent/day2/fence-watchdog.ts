// The fence of one capsule that must stop when its node is cut off: a small
// detached process that outlives the agent (kill -9 included). It watches
// the lease file the agent renews while it is in touch with the cluster;
// once the lease is older than the grace it kills the capsule through the
// OCI runtime and exits. It also exits when the capsule is gone. Node
// built-ins only: it starts fast and holds little.
import { existsSync, statSync } from 'node:fs'
import { spawnSync } from 'node:child_process'

interface WatchdogArgs { lease: string, graceMs: number, kill: string[], state: string[] }

/** How often the lease is looked at; FENCE_MARGIN_MS in the scheduler covers it. */
const POLL_MS = 250
/** How often the runtime is asked whether the capsule still exists. */
const STATE_EVERY = 8

function runArgv (argv: string[]): { code: number, stdout: string } {
  const [cmd, ...rest] = argv
  if (cmd === undefined) return { code: 1, stdout: '' }
  const r = spawnSync(cmd, rest, { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] })
  return { code: r.status ?? 1, stdout: r.stdout ?? '' }
}

function main (): void {
  const a = JSON.parse(process.argv[2] ?? '{}') as WatchdogArgs
  if (typeof a.lease !== 'string' || typeof a.graceMs !== 'number' || !Array.isArray(a.kill) || !Array.isArray(a.state)) process.exit(2)
  // The runtime's state dir (`--root DIR`): runc creates it when asked about
  // a capsule under a missing one, so a watchdog outliving a removed data
  // dir would leave an empty tree behind. Gone means nothing is left to fence.
  const rootAt = a.state.indexOf('--root')
  const stateRoot = rootAt >= 0 ? a.state[rootAt + 1] : undefined
  let n = 0
  const timer = setInterval(() => {
    n++
    if (stateRoot !== undefined && !existsSync(stateRoot)) { clearInterval(timer); return }
    if (n % STATE_EVERY === 0) {
      const st = runArgv(a.state)
      // Gone, or stopped by someone else: nothing left to fence.
      if (st.code !== 0 || /"status":\s*"stopped"/.test(st.stdout)) { clearInterval(timer); return }
    }
    let age: number
    try { age = Date.now() - statSync(a.lease).mtimeMs } catch { age = Infinity }
    if (age > a.graceMs) {
      runArgv(a.kill)
      clearInterval(timer)
    }
  }, POLL_MS)
}

main()
