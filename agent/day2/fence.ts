// Fencing for capsules that stop when their node is cut off (`disconnect`
// with `stopAfterMs`): the agent renews a lease file while it is in touch
// with the Raft leader, and each such capsule gets a watchdog process
// (fence-watchdog.ts) that kills it once the lease is older than its grace.
// The watchdog outlives the agent, so kill -9 of the agent fences too.
import { spawn } from 'node:child_process'
import { closeSync, openSync, utimesSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** How often the lease is renewed while in touch; graces start at 1 s. */
export const LEASE_RENEW_MS = 500
const WATCHDOG = join(dirname(fileURLToPath(import.meta.url)), 'fence-watchdog.js')

export interface FenceInit {
  /** Where the lease and the watchdogs' pid files live (the runtime's data dir). */
  dir: string
  /** Whether this node is in touch with the cluster's leader now. */
  connected: () => boolean
  /** The OCI runtime's command line with these arguments. */
  runtimeArgv: (args: string[]) => string[]
  log: { warn: (o: object, m: string) => void }
}

export class FenceKeeper {
  private timer: NodeJS.Timeout | undefined
  private readonly lease: string

  constructor (private readonly o: FenceInit) {
    this.lease = join(o.dir, 'fence.lease')
  }

  start (): void {
    this.renew()
    this.timer = setInterval(() => { this.renew() }, LEASE_RENEW_MS)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
  }

  private renew (): void {
    if (!this.o.connected()) return
    try {
      const now = new Date()
      try { utimesSync(this.lease, now, now) } catch { closeSync(openSync(this.lease, 'a', 0o600)) }
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'cannot renew the fence lease')
    }
  }

  /** Starts the watchdog of one running capsule, unless one already watches it (an agent restart adopts both). */
  async arm (runtimeName: string, graceMs: number): Promise<void> {
    const pidFile = join(this.o.dir, `fence-${runtimeName}.pid`)
    const old = Number(await readFile(pidFile, 'utf8').catch(() => '')) // none (or unreadable): start a watchdog
    if (Number.isInteger(old) && old > 0 && alive(old)) return
    this.renew()
    const args = JSON.stringify({ lease: this.lease, graceMs, kill: this.o.runtimeArgv(['kill', runtimeName, 'KILL']), state: this.o.runtimeArgv(['state', runtimeName]) })
    const child = spawn(process.execPath, [WATCHDOG, args], { detached: true, stdio: 'ignore' })
    child.unref()
    if (child.pid !== undefined) await writeFile(pidFile, String(child.pid), { mode: 0o600 })
  }
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false } // ESRCH: gone (the agent is root: no EPERM)
}
