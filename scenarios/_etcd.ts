// etcd as the peer of the Raft scenarios: N members of Debian's etcd-server
// (3.4, its default 100 ms heartbeat and 1000 ms election timeout) on
// loopback, each one killable with -9 and restartable on its data dir.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { waitFor } from '../test/helpers/harness.js'
import { freePort } from '../test/helpers/registry.js'

export const ETCD = '/usr/bin/etcd'

export const b64 = (s: string): string => Buffer.from(s).toString('base64')

export interface EtcdMember { name: string, peer: number, client: number, url: string, proc: ChildProcess | undefined }

export class EtcdCluster {
  private constructor (readonly dir: string, readonly members: EtcdMember[]) {}

  /** Starts `n` members and waits until a write through the first commits. */
  static async start (n: number): Promise<EtcdCluster> {
    const dir = await mkdtemp(join(tmpdir(), 'bolt-etcd-'))
    const members: EtcdMember[] = []
    for (let i = 1; i <= n; i++) {
      const client = await freePort()
      members.push({ name: `e${i}`, peer: await freePort(), client, url: `http://127.0.0.1:${client}`, proc: undefined })
    }
    const c = new EtcdCluster(dir, members)
    for (const m of members) c.spawn(m)
    const ok = await waitFor(async () => (await c.put(members[0]!, 'ready', '1', AbortSignal.timeout(2000))).ok, 30_000, 200)
    if (ok < 0) { await c.stop(); throw new Error('etcd did not commit a write within 30 s') }
    return c
  }

  private spawn (m: EtcdMember): void {
    const initial = this.members.map(x => `${x.name}=http://127.0.0.1:${x.peer}`).join(',')
    // On a restart the data dir already holds the member: etcd ignores the initial-cluster flags then.
    m.proc = spawn(ETCD, [
      '--name', m.name, '--data-dir', join(this.dir, m.name),
      '--listen-peer-urls', `http://127.0.0.1:${m.peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${m.peer}`,
      '--listen-client-urls', m.url, '--advertise-client-urls', m.url,
      '--initial-cluster', initial, '--initial-cluster-state', 'new', '--initial-cluster-token', 'bench', '--log-level', 'error'
    ], { stdio: 'ignore' })
  }

  live (): EtcdMember[] { return this.members.filter(m => m.proc !== undefined && m.proc.exitCode === null && m.proc.signalCode === null) }

  /** A write through member `m` (etcd forwards it to its leader); ok once committed. */
  async put (m: EtcdMember, key: string, value: string, signal: AbortSignal): Promise<{ ok: boolean, status: number, detail: string }> {
    try {
      const r = await fetch(`${m.url}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key: b64(key), value: b64(value) }), signal })
      const body = await r.text()
      // The gateway answers a failed put with an error body (and a non-200 status, or 200 with "error" in some versions).
      return { ok: r.ok && !body.includes('"error"'), status: r.status, detail: body.slice(0, 120) }
    } catch (err) {
      return { ok: false, status: 0, detail: (err as Error).message.slice(0, 120) }
    }
  }

  /** The member every live member names as leader, once they agree. */
  async agreedLeader (timeoutMs: number): Promise<EtcdMember | undefined> {
    let found: EtcdMember | undefined
    const ok = await waitFor(async () => {
      const live = this.live()
      const sts = await Promise.all(live.map(async m => {
        const r = await fetch(`${m.url}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(2000) }).catch(() => undefined)
        return r?.ok === true ? await r.json() as { header?: { member_id?: string }, leader?: string } : undefined
      }))
      const leader = sts[0]?.leader
      if (leader === undefined || leader === '0' || !sts.every(s => s?.leader === leader)) return false
      found = live[sts.findIndex(s => s?.header?.member_id === leader)]
      return found !== undefined
    }, timeoutMs, 100)
    return ok < 0 ? undefined : found
  }

  async kill9 (m: EtcdMember): Promise<void> {
    const p = m.proc
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return
    const exited = new Promise(resolve => p.once('exit', resolve))
    p.kill('SIGKILL')
    await exited
  }

  restart (m: EtcdMember): void { this.spawn(m) }

  async stop (): Promise<void> {
    await Promise.all(this.members.map(async m => { await this.kill9(m) }))
    await rm(this.dir, { recursive: true, force: true })
  }
}
