// How a capsule's run ended and what it leaves to free: the exit reason
// read from its cgroup and bundle, and the release of its runtime state,
// cgroup, network and rootfs mount (its record and logs stay).
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { CapsuleExit, CapsuleRecord } from './capsule-state.js'
import type { CapsuleCgroup } from './cgroups.js'
import type { NodeRuntimeDeps, RecoveryReport } from './runtime-types.js'

/** Why a capsule that exited with `code` (null: no code left) ended. */
export async function exitOf (dir: string, record: CapsuleRecord, cg: CapsuleCgroup | undefined, code: number | null): Promise<CapsuleExit> {
  const [oomKills, limitHit, started] = await Promise.all([
    cg !== undefined ? cg.oomKills() : 0,
    cg !== undefined ? cg.memoryLimitHit() : false,
    stat(join(dir, 'pid')).then(() => true, () => false)
  ])
  const oom = oomKills > 0 || (limitHit && code === 137 && !record.stopRequested)
  let reason: CapsuleExit['reason']
  if (oom) reason = 'oom'
  else if (code === null) reason = 'lost'
  else if (!started) reason = 'start-failed'
  else if (record.stopRequested) reason = 'stopped'
  else reason = 'exited'
  return { exitCode: code, reason, oomKilled: oom, finishedAt: Date.now() }
}

/** Frees what a stopped capsule holds: runtime state, cgroup, network, rootfs mount. Keeps its record and logs. */
export async function releaseCapsule (deps: Pick<NodeRuntimeDeps, 'driver' | 'bridge' | 'images'>, name: string, dir: string, cg: CapsuleCgroup | undefined): Promise<void> {
  try {
    const st = await deps.driver.state(name)
    if (st !== undefined) {
      if (st.status === 'running' || st.status === 'paused' || st.status === 'created') await deps.driver.kill(name, 'SIGKILL', true)
      await deps.driver.delete(name, true)
    }
    await cg?.remove()
    await deps.bridge?.detach(name)
  } finally {
    // Whatever failed above, the rootfs mount goes: one left under a removed dir stays for the machine's life.
    await deps.images.removeRootfs(dir)
  }
}

/**
 * At recovery: removes the networks of capsules not in `running` and the
 * runtime's containers no capsule record claims (`known`), into `report`.
 */
export async function removeOrphans (deps: Pick<NodeRuntimeDeps, 'driver' | 'bridge' | 'onError'>, running: ReadonlySet<string>, known: (name: string) => boolean, report: RecoveryReport): Promise<void> {
  // Namespaces, veths and port forwards of capsules that no longer run.
  if (deps.bridge !== undefined) {
    try {
      for (const n of await deps.bridge.reconcile(running)) report.orphansRemoved.push(`network ${n}`)
    } catch (err) {
      // Capsules still run without it; the next start tries again. Not a reason to refuse every capsule on this node.
      report.networkError = (err as Error).message
    }
  }
  // Containers in our runtime state root that no record claims.
  for (const c of await deps.driver.list().catch((err: Error) => { deps.onError?.('release', '(orphaned containers)', err); return [] })) {
    if (known(c.id)) continue
    await deps.driver.kill(c.id, 'SIGKILL', true)
    await deps.driver.delete(c.id, true)
    report.orphansRemoved.push(c.id)
  }
}
