// dns-qps: queries per second a real agent's DNS answers for a service name
// (A record of a running, healthy capsule), against dnsmasq answering the
// same name from a hosts file — same client, same run, rounds alternated.
// The client keeps its queries on several UDP sockets, as resolvers do (a
// random source port per query, RFC 5452): one socket would pin every query
// to one of the agent's UDP threads. Many short rounds, medians: the machine's
// load swings within seconds. Figure: qpsRatio = agent / dnsmasq (goal >= 1.0).
import { spawn } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import dnsPacket from 'dns-packet'
import { Cluster, waitFor } from '../test/helpers/harness.js'
import { RAFT_TOML, apiOf, kv } from './_raft.js'
import type { Scenario } from './report.js'
import { freePort } from '../test/helpers/registry.js'

const NAME = 'web.service.bolt'

/** Keeps `window` queries in flight on each of `sockets` sockets against 127.0.0.1:port for `ms`; returns answers per second. */
async function load (port: number, ms: number, window: number, sockets = 1): Promise<number> {
  const each = await Promise.all(Array.from({ length: sockets }, async () => await loadOne(port, ms, window)))
  return each.reduce((a, b) => a + b, 0)
}

async function loadOne (port: number, ms: number, window: number): Promise<number> {
  const sock = createSocket('udp4')
  await new Promise<void>(resolve => sock.bind(0, '127.0.0.1', resolve))
  const query = dnsPacket.encode({ type: 'query', id: 0, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: NAME }] })
  let answered = 0
  let nextId = 1
  let inFlight = 0
  let done = false
  const send = (): void => {
    if (done) return
    const q = Buffer.from(query)
    q.writeUInt16BE(nextId, 0)
    nextId = (nextId + 1) & 0xffff
    inFlight++
    sock.send(q, port, '127.0.0.1')
  }
  const end = performance.now() + ms
  const t0 = performance.now()
  return await new Promise<number>(resolve => {
    // A lost datagram must not shrink the window forever: top it up every 50 ms.
    const topUp = setInterval(() => { inFlight = Math.min(inFlight, window - 1); while (inFlight < window) send() }, 50)
    sock.on('message', (reply) => {
      if (done) return
      inFlight--
      if (reply.byteLength > 12 && reply.readUInt16BE(6) > 0) answered++ // an answer record, not an error
      if (performance.now() < end) send()
      else if (inFlight <= 0 || performance.now() > end + 500) finish()
    })
    const finish = (): void => {
      if (done) return
      done = true
      clearInterval(topUp)
      sock.close()
      resolve(answered / ((performance.now() - t0) / 1000))
    }
    setTimeout(finish, ms + 1000)
    for (let i = 0; i < window; i++) send()
  })
}

export const scenario: Scenario = {
  name: 'dns-qps',
  description: "queries/s of the agent's DNS for a service name vs dnsmasq from a hosts file (same client, same run)",
  run: async ({ quick }) => {
    const dir = await mkdtemp(join(tmpdir(), `bolt-dnsqps-${process.pid}-`))
    const cluster = await Cluster.create(`${RAFT_TOML(1)}\n[dns]\nlisten = "127.0.0.1:0"\nupstream = []\n`)
    const dnsmasqPort = await freePort()
    await writeFile(join(dir, 'hosts'), `127.0.0.1 ${NAME}\n`)
    const dnsmasq = spawn('/usr/sbin/dnsmasq', ['--keep-in-foreground', '--no-resolv', '--no-hosts', `--addn-hosts=${join(dir, 'hosts')}`, `--port=${dnsmasqPort}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--pid-file=', '--user=root', '--conf-file=/dev/null', '--cache-size=1000'], { stdio: 'ignore' })
    try {
      const a0 = await cluster.add('a0')
      await a0.start(['init'])
      const dns = (a0.ready as unknown as { dns: string | null }).dns
      if (dns === null) throw new Error('the agent serves no DNS')
      const agentPort = Number(dns.split(':')[1])
      const port = await freePort()
      const r = await kv(await apiOf(a0), 'POST', '/v1/capsules', { name: 'web', image: 'bolt.local/busybox:demo', args: ['/bin/sh', '-c', 'exec sleep 3600'], resources: { cpu: 0.1, memoryBytes: 32 * 1024 * 1024 }, ports: [{ container: port }] }, 30_000)
      if (r.status !== 200) throw new Error(`run failed: ${JSON.stringify(r.body)}`)
      if (await waitFor(async () => await load(agentPort, 200, 1) > 0, 120_000, 500) < 0) throw new Error('web never answered in DNS')
      const roundMs = 500
      const rounds = quick ? 8 : 24
      const sockets = 8
      const window = 8
      const agent: number[] = []
      const base: number[] = []
      await load(agentPort, 1500, window, sockets) // warm both before measuring (the agent starts its UDP threads under load)
      await load(dnsmasqPort, 1500, window, sockets)
      const load0 = loadavg()[0]
      for (let i = 0; i < rounds; i++) {
        // Alternate which goes first, so a swing in the machine's load weighs on both alike.
        const pair = i % 2 === 0 ? [agentPort, dnsmasqPort] : [dnsmasqPort, agentPort]
        for (const port of pair) (port === agentPort ? agent : base).push(await load(port, roundMs, window, sockets))
      }
      const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? Number.NaN }
      const ratio = median(agent) / median(base)
      return {
        name: 'dns-qps',
        figures: { agentQps: Math.round(median(agent)), dnsmasqQps: Math.round(median(base)), qpsRatio: ratio },
        goal: 'qpsRatio >= 1.0',
        met: ratio >= 1.0,
        config: { roundMs, rounds, sockets, windowPerSocket: window, agentRounds: agent.map(Math.round), dnsmasqRounds: base.map(Math.round), loadAverage: [load0, loadavg()[0]], client: `one Node thread, ${sockets} UDP sockets x ${window} queries in flight; medians of alternated rounds` }
      }
    } finally {
      dnsmasq.kill('SIGKILL')
      await cluster.destroy()
      await rm(dir, { recursive: true, force: true })
    }
  }
}
