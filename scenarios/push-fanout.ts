// push-fanout: skopeo pushes a ~256 MiB image (32 MiB with --quick) to one
// agent's registry endpoint, then 8 skopeo clients, one per agent, pull it
// at once through their own agent (blobs from peers; no registry server).
// Baseline in the same run: skopeo pushes the same image to Debian's
// docker-registry and 8 clients pull it straight from there. Figures: total
// wall time (push + pulls) against the baseline's (goal ≤ 1.0), and the
// bytes the pushed-to agent served to peers against the image size
// (goal ≤ K + 0.5, K = [registry] replicas = 2). Real agent processes on one
// machine's loopback: on a loaded 2-core machine both sides are bound by CPU,
// so each half's CPU-seconds per party are reported (push-fanout-cpu.ts), and
// timeRatioFloor: the ratio no design reaches while both share the cores.
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, seedAddr, waitFor, type AgentProcess } from '../test/helpers/harness.js'
import { buildImage, startRegistry, writeImageLayout } from '../test/helpers/registry.js'
import { cpuBetween, cpuLine, meshFloorMsPerMiB, sampleCpu } from './push-fanout-cpu.js'
import type { Scenario, ScenarioReport } from './report.js'

const MiB = 1024 * 1024
const AGENTS = 8
const K = 2
const SKOPEO_TIMEOUT_MS = 15 * 60_000
/** How long an agent may take to start: on a loaded 2-core machine 8 agents starting at once took more than the harness's 30 s. */
const START_TIMEOUT_MS = 180_000

/** `cluster.formAlive(n, 'quic')`, joining one at a time with a longer start timeout (the figures start after this). */
async function formAlive (cluster: Cluster, n: number): Promise<AgentProcess[]> {
  const first = await cluster.add('a0')
  await first.start(['init'], START_TIMEOUT_MS)
  const seed = seedAddr(first, 'quic')
  const agents = [first]
  // One after another: joins at once on a loaded machine timed out reaching the first agent.
  for (let i = 1; i < n; i++) {
    const a = await cluster.add(`a${i}`)
    await a.start(['join', seed], START_TIMEOUT_MS, { BOLT_TOKEN: first.ready!.token })
    agents.push(a)
  }
  if (await waitFor(async () => (await first.status())?.members.filter(m => m.state === 'alive').length === n, START_TIMEOUT_MS, 500) < 0) throw new Error(`not all ${n} agents are alive members`)
  return agents
}

async function skopeo (args: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    execFile('skopeo', args, { timeout: SKOPEO_TIMEOUT_MS, maxBuffer: 8 * MiB }, (err, _stdout, stderr) => {
      if (err !== null) reject(new Error(`skopeo ${args.slice(0, 1).join(' ')} ${args.at(-1) ?? ''} failed: ${stderr.trim().slice(-300)}`))
      else resolve()
    })
  })
}

/** Bytes this agent served to peers so far (its /metrics). */
async function servedBytes (a: AgentProcess): Promise<number> {
  return (await contentBytes(a)).served
}

/** This agent's content byte counters (its /metrics): served to peers, received from peers. */
async function contentBytes (a: AgentProcess): Promise<{ served: number, peers: number }> {
  const text = await (await fetch(`${a.ready!.api}/metrics`)).text()
  const read = (source: string): number => Number(new RegExp(`bolt_content_bytes_total\\{source="${source}"\\} (\\d+)`).exec(text)?.[1] ?? NaN)
  return { served: read('served'), peers: read('peers') }
}

/** One line per agent: MiB served to and received from peers since `before`, and when its client's pull ended. */
function perAgentLines (agents: AgentProcess[], before: Array<{ served: number, peers: number }>, after: Array<{ served: number, peers: number }>, doneAt: number[]): string {
  return agents.map((a, i) => `#   ${a.name}: served ${((after[i]!.served - before[i]!.served) / MiB).toFixed(1)} MiB, from peers ${((after[i]!.peers - before[i]!.peers) / MiB).toFixed(1)} MiB, pull done at ${doneAt[i]!.toFixed(2)} s`).join('\n') + '\n'
}

function endpoint (a: AgentProcess): string {
  const url = (a.ready as unknown as { mirror: string | null }).mirror
  if (url === null) throw new Error(`${a.name} has no registry endpoint`)
  return url.slice('http://'.length)
}

export const scenario: Scenario = {
  name: 'push-fanout',
  description: `push an image to one agent, ${AGENTS} agents pull it at once, vs skopeo to docker-registry and ${AGENTS} direct pulls`,
  run: async ({ quick }): Promise<ScenarioReport> => {
    const layerSize = (quick ? 8 : 64) * MiB
    const registry = await startRegistry()
    const out = await mkdtemp(join(tmpdir(), 'bolt-push-fanout-'))
    const cluster = await Cluster.create(`[mirror]\nlisten = "127.0.0.1:0"\n[registry]\nreplicas = ${K}\n`)
    try {
      const img = await buildImage({ extraLayerSizes: [layerSize, layerSize, layerSize, layerSize], gzip: true })
      const layout = join(out, 'layout')
      await writeImageLayout(layout, 'v1', img)
      const agents = await formAlive(cluster, AGENTS)
      const tok = await agents[0]!.cli(['registry', 'token', '--json'])
      if (tok.code !== 0) throw new Error(`registry token: ${tok.stderr}`)
      const cred = JSON.parse(tok.stdout) as { username: string, password: string }

      const served0 = await servedBytes(agents[0]!)
      const before = await Promise.all(agents.map(contentBytes))
      const pids = agents.map(a => a.proc?.pid).filter((p): p is number => p !== undefined)
      const c0 = await sampleCpu(pids)
      const t0 = performance.now()
      await skopeo(['copy', '--dest-tls-verify=false', '--preserve-digests', '--dest-creds', `${cred.username}:${cred.password}`, `oci:${layout}:v1`, `docker://${endpoint(agents[0]!)}/bench/push:v1`])
      const pushSeconds = (performance.now() - t0) / 1000
      const c1 = await sampleCpu(pids)
      const servedByPush = await servedBytes(agents[0]!) - served0
      const doneAt: number[] = agents.map(() => NaN)
      await Promise.all(agents.map(async (a, i) => {
        await skopeo(['copy', '--src-tls-verify=false', `docker://${endpoint(a)}/bench/push:v1`, `oci:${join(out, `agent-${i}`)}:v1`])
        doneAt[i] = (performance.now() - t0) / 1000
      })).catch((err: Error) => {
        // Why a pull through an agent failed is in that agent's log: show its warnings.
        for (const a of agents) process.stderr.write(a.stderrTail.filter(l => /"level":(4|5)\d/.test(l)).slice(-8).map(l => `# ${a.name}: ${l.slice(0, 600)}\n`).join(''))
        throw err
      })
      const clusterSeconds = (performance.now() - t0) / 1000
      const c2 = await sampleCpu(pids)
      const served = await servedBytes(agents[0]!) - served0
      const after = await Promise.all(agents.map(contentBytes))
      process.stdout.write(`# through the agents: push ${pushSeconds.toFixed(2)} s, total ${clusterSeconds.toFixed(2)} s, pushed-to agent served ${(served / MiB).toFixed(1)} MiB\n`)
      process.stdout.write(perAgentLines(agents, before, after, doneAt))
      const cpuPush = cpuBetween(c0, c1)
      const cpuPulls = cpuBetween(c1, c2)
      process.stdout.write(cpuLine('through the agents, push', cpuPush) + cpuLine('through the agents, pulls', cpuPulls))
      for (let i = 0; i < AGENTS; i++) await rm(join(out, `agent-${i}`), { recursive: true, force: true })

      const d0 = await sampleCpu(pids)
      const t1 = performance.now()
      await skopeo(['copy', '--dest-tls-verify=false', '--preserve-digests', `oci:${layout}:v1`, `docker://${registry.url.slice('http://'.length)}/bench/push:v1`])
      const directPushSeconds = (performance.now() - t1) / 1000
      const d1 = await sampleCpu(pids)
      await Promise.all(agents.map(async (_a, i) => { await skopeo(['copy', '--src-tls-verify=false', `docker://${registry.url.slice('http://'.length)}/bench/push:v1`, `oci:${join(out, `direct-${i}`)}:v1`]) }))
      const directSeconds = (performance.now() - t1) / 1000
      const d2 = await sampleCpu(pids)
      const cpuDirectPush = cpuBetween(d0, d1)
      const cpuDirectPulls = cpuBetween(d1, d2)
      process.stdout.write(cpuLine('direct, push', cpuDirectPush) + cpuLine('direct, pulls', cpuDirectPulls))

      // The floor on one machine: the clients' and the registry's CPU of the
      // direct run (work any design repeats), plus the least the mesh adds
      // for every byte that went agent to agent (sealed, opened, hashed, stored),
      // against the direct run's alone. Both sides share the same cores.
      const meshMiB = after.reduce((sum, a, i) => sum + a.peers - before[i]!.peers, 0) / MiB
      const floorMsPerMiB = meshFloorMsPerMiB()
      const meshFloorCpu = meshMiB * floorMsPerMiB / 1000
      const directWorkCpu = cpuDirectPush.clients + cpuDirectPulls.clients + cpuDirectPush.registry + cpuDirectPulls.registry
      const timeRatioFloor = (directWorkCpu + meshFloorCpu) / directWorkCpu
      process.stdout.write(`# floor: ${meshMiB.toFixed(0)} MiB agent to agent x ${floorMsPerMiB.toFixed(2)} ms/MiB (seal + open + sha256 + store) = ${meshFloorCpu.toFixed(1)} CPU-s over the direct run's ${directWorkCpu.toFixed(1)} CPU-s of clients and registry: timeRatio >= ${timeRatioFloor.toFixed(2)} while both runs are CPU-bound on ${availableParallelism()} cores\n`)
      const timeRatio = clusterSeconds / directSeconds
      const uploadRatio = served / img.blobBytes
      return {
        name: 'push-fanout',
        figures: {
          imageMiB: img.blobBytes / MiB,
          pushSeconds,
          secondsThroughAgents: clusterSeconds,
          directPushSeconds,
          secondsDirect: directSeconds,
          servedByPushMiB: servedByPush / MiB,
          agentCpuSecondsPush: cpuPush.agents,
          agentCpuSecondsPulls: cpuPulls.agents,
          agentSystemSecondsPulls: cpuPulls.agentsSystem,
          agentMinorFaultsPulls: cpuPulls.agentsMinorFaults,
          clientCpuSecondsPush: cpuPush.clients,
          clientCpuSecondsPulls: cpuPulls.clients,
          machineBusySecondsThroughAgents: cpuPush.machineBusy + cpuPulls.machineBusy,
          clientCpuSecondsDirectPush: cpuDirectPush.clients,
          clientCpuSecondsDirectPulls: cpuDirectPulls.clients,
          registryCpuSecondsDirect: cpuDirectPush.registry + cpuDirectPulls.registry,
          machineBusySecondsDirect: cpuDirectPush.machineBusy + cpuDirectPulls.machineBusy,
          meshMiB,
          meshFloorMsPerMiB: floorMsPerMiB,
          meshFloorCpuSeconds: meshFloorCpu,
          timeRatioFloor,
          uploadRatio,
          timeRatio
        },
        goal: `timeRatio <= 1.0 and uploadRatio <= ${K + 0.5}`,
        met: timeRatio <= 1.0 && uploadRatio <= K + 0.5,
        config: { agents: AGENTS, replicas: K, clients: 'skopeo copy oci: → docker:// (push), docker:// → oci: (pulls)', baseline: 'Debian docker-registry on loopback', cores: availableParallelism(), layers: 4, layerBytes: layerSize, realAgents: true, quick }
      }
    } finally {
      await cluster.destroy()
      await rm(out, { recursive: true, force: true })
      await registry.stop()
    }
  }
}
