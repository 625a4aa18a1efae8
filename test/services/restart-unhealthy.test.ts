// --restart-unhealthy through the CLI on one real agent: an instance whose
// exec check fails is stopped and started again (one restart, whatever the
// restart policy), and comes back healthy.
import t from 'tap'
import { existsSync } from 'node:fs'
import { Cluster, waitFor, untilStopped } from '../helpers/harness.js'
import { RAFT_TOML } from '../../scenarios/_raft.js'

const haveRunc = existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc') || existsSync('/usr/bin/crun')
const ok = haveRunc && process.getuid?.() === 0 && existsSync('/bin/busybox')

interface Ps { name: string, state: string, health: string | null, restarts: number, reason: string | null }

t.test('an unhealthy instance is restarted with --restart-unhealthy', { skip: ok ? false : 'needs root, runc and busybox' }, async t => {
  const cluster = await Cluster.create(`${RAFT_TOML(1)}\n[dns]\nenabled = false\n`)
  t.teardown(async () => { await cluster.destroy() })
  const a0 = await cluster.add('a0')
  await a0.start(['init'], 60_000)
  const r = await a0.cli(['run', 'bolt.local/busybox:demo', '--name', 'flaky', '--memory', '32M', '--check', 'exec:test -f /tmp/ok', '--check-interval', '300ms', '--unhealthy-threshold', '1', '--restart-unhealthy', '--', '/bin/sh', '-c', `echo > /tmp/ok; ${untilStopped()}`])
  t.equal(r.code, 0, `run exits 0 (${r.stderr.trim()})`)
  let row: Ps | undefined
  const ps = async (): Promise<Ps | undefined> => (JSON.parse((await a0.cli(['ps', '--json'])).stdout) as Ps[]).find(x => x.name === 'flaky')
  t.ok(await waitFor(async () => { row = await ps(); return row?.health === 'healthy' }, 120_000, 500) >= 0, `healthy (${JSON.stringify(row)})`)
  t.equal((await a0.cli(['exec', 'flaky', '--', '/bin/busybox', 'rm', '/tmp/ok'])).code, 0, 'the check starts failing')
  t.ok(await waitFor(async () => { row = await ps(); return row?.restarts === 1 && row.state === 'running' && row.health === 'healthy' }, 60_000, 300) >= 0, `restarted once and healthy again (${JSON.stringify(row)})`)
})
