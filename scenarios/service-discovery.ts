// service-discovery: 3 agents; a capsule publishing a port is submitted on
// one, and another agent's DNS is asked until it answers. Figures: p50/p99
// from the submit, and from the moment `ps` first shows it running (its
// health, without a check, is healthy then) — the goal is p99 <= 1 s for the
// latter.
import { createSocket } from 'node:dgram'
import dnsPacket from 'dns-packet'
import { Cluster, waitFor, type AgentProcess } from '../test/helpers/harness.js'
import { RAFT_TOML, agreedLeader, apiOf, kv } from './_raft.js'
import { percentile, type Scenario } from './report.js'
import { freePort } from '../test/helpers/registry.js'

/** Whether DNS at port answers NAME with at least one record (one UDP query, 300 ms at most). */
async function answers (port: number, name: string): Promise<boolean> {
  const sock = createSocket('udp4')
  try {
    return await new Promise<boolean>(resolve => {
      const timer = setTimeout(() => { resolve(false) }, 300)
      sock.on('message', (m) => { clearTimeout(timer); resolve(m.byteLength > 12 && m.readUInt16BE(6) > 0) })
      sock.send(dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name }] }), port, '127.0.0.1')
    })
  } finally {
    sock.close()
  }
}

async function running (a: AgentProcess, name: string): Promise<boolean> {
  const r = await kv(await apiOf(a), 'GET', '/v1/capsules', undefined, 5000)
  return (r.body as unknown as Array<{ name: string, state: string }>).some(x => x.name === name && x.state === 'running')
}

export const scenario: Scenario = {
  name: 'service-discovery',
  description: 'from run until another agent\'s DNS answers the service, p50/p99 (3 agents)',
  run: async ({ quick }) => {
    const cluster = await Cluster.create(`${RAFT_TOML(3)}\n[dns]\nlisten = "127.0.0.1:0"\nupstream = []\n`)
    try {
      const agents = await cluster.formAlive(3)
      if (await agreedLeader(agents, 60_000) === undefined) throw new Error('no leader')
      const [submitter, , asker] = agents as [AgentProcess, AgentProcess, AgentProcess]
      const dnsPort = Number(((asker.ready as unknown as { dns: string }).dns).split(':')[1])
      const runs = quick ? 5 : 20
      const fromSubmit: number[] = []
      const fromRunning: number[] = []
      for (let i = 0; i < runs; i++) {
        const name = `sd${i}`
        const port = await freePort()
        const t0 = performance.now()
        const r = await kv(await apiOf(submitter), 'POST', '/v1/capsules', { name, image: 'bolt.local/busybox:demo', args: ['/bin/sh', '-c', 'exec sleep 3600'], resources: { cpu: 0.05, memoryBytes: 16 * 1024 * 1024 }, ports: [{ container: port }] }, 30_000)
        if (r.status !== 200) throw new Error(`run failed: ${JSON.stringify(r.body)}`)
        let tRunning: number | undefined
        let tDns: number | undefined
        // Both observed by polling at the same pace, so neither side gets a head start.
        const ok = await waitFor(async () => {
          if (tRunning === undefined && await running(submitter, name)) tRunning = performance.now()
          if (tDns === undefined && await answers(dnsPort, `${name}.service.bolt`)) tDns = performance.now()
          return tRunning !== undefined && tDns !== undefined
        }, 120_000, 20)
        if (ok < 0) throw new Error(`${name} never answered in DNS`)
        fromSubmit.push((tDns as number) - t0)
        fromRunning.push(Math.max(0, (tDns as number) - (tRunning as number)))
        await kv(await apiOf(submitter), 'DELETE', `/v1/capsules/${name}`, undefined, 30_000)
      }
      const p99 = percentile(fromRunning, 99)
      return {
        name: 'service-discovery',
        figures: { p50FromSubmitMs: percentile(fromSubmit, 50), p99FromSubmitMs: percentile(fromSubmit, 99), p50AfterRunningMs: percentile(fromRunning, 50), p99AfterRunningMs: p99 },
        goal: 'p99AfterRunningMs <= 1000',
        met: p99 <= 1000,
        config: { runs, agents: 3, fromSubmit: fromSubmit.map(Math.round), afterRunning: fromRunning.map(Math.round) }
      }
    } finally {
      await cluster.destroy()
    }
  }
}
