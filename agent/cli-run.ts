// `bolt-agent run`: a capsule spec from flags, submitted in one request that
// the agent answers once the scheduler has placed it (or said why it cannot).
// Loads no zod (test/agent/cli-modules.test.ts): the agent checks the spec,
// and the flags' own parsers here are zod-free.
import type { Command } from 'commander'
import { writeFile } from 'node:fs/promises'
import { AgentRequestError, type ApiClient } from './api/client.js'
import { UserError } from './errors.js'
import { client, collect, out, pairs, type GlobalOpts } from './cli-common.js'
import { addHealthOptions, type HealthFlags } from './services/cli.js'
import type { NetworkMode, PortRequest } from './scheduler/spec.js'
import { parseMemory, portsProblem } from './scheduler/spec-text.js'
import { placementOf, placementSettled, type Placement } from './scheduler/placement-wait.js'
import { parsePortOption, PortOptionError } from './ports.js'
import { disconnectGrace, runtimeOptions } from './day2/cli.js'

/** How long `run` waits for the scheduler to place every instance (Nomad's `job run` monitor, kept short). */
export const RUN_WAIT_MS = 10_000
/** How often `run` asks an agent that cannot push the placement (one from before ?wait=placed). */
const POLL_MS = 250
/** The flags that make a health check or service name (their parser loads zod). */
const HEALTH_FLAGS: Array<keyof HealthFlags> = ['check', 'checkInterval', 'checkTimeout', 'healthyThreshold', 'unhealthyThreshold', 'restartUnhealthy', 'service']

/**
 * BOLT_TIMINGS=FILE: `run` writes when its process started, sent the submit
 * and had the answer (epoch ms), for the run-vs-containerd breakdown.
 */
const timings: Record<string, number> = {}
function mark (step: string): void {
  if (process.env.BOLT_TIMINGS !== undefined) timings[step] = performance.timeOrigin + performance.now()
}
async function writeTimings (): Promise<void> {
  const file = process.env.BOLT_TIMINGS
  if (file === undefined || file === '') return
  await writeFile(file, JSON.stringify({ start: performance.timeOrigin, ...timings, exit: performance.timeOrigin + performance.now() }))
}

function defaultName (image: string): string {
  const base = (image.split('/').pop() ?? 'capsule').split(/[:@]/)[0]!.toLowerCase().replace(/[^a-z0-9_.-]/g, '-').replace(/^[^a-z0-9]+/, '') || 'capsule'
  return `${base.slice(0, 50)}-${Math.random().toString(36).slice(2, 6)}`
}

/** Asks every POLL_MS until every instance of `name` is placed or has the scheduler's verdict, or `ms` passed. */
async function pollPlacement (c: ApiClient, name: string, ms: number): Promise<Placement> {
  const deadline = Date.now() + ms
  for (;;) {
    const rows = (await c.request<Array<{ capsule: string, name: string, node: string | null, reason: string | null, state: string }>>('GET', '/v1/capsules')).filter(r => r.capsule === name)
    const p = placementOf({ instances: rows as unknown as Parameters<typeof placementOf>[0]['instances'] })
    if ((rows.length > 0 && placementSettled(p)) || Date.now() >= deadline) return p
    await new Promise(resolve => setTimeout(resolve, POLL_MS))
  }
}

export function registerRunCommand (program: Command): void {
  addHealthOptions(program.command('run').description('submit a capsule; prints its name'))
    .argument('<image>', 'image reference, e.g. 127.0.0.1:5000/game-server:1.2')
    .argument('[cmd...]', 'command and arguments (after --)')
    .option('--name <name>', 'capsule name (default: from the image)')
    .option('--cpu <cpus>', 'CPUs to reserve (fractions allowed)')
    .option('--memory <size>', 'memory to reserve and limit, e.g. 512M, 2G')
    .option('--gpus <n>', 'GPUs')
    .option('--env <k=v>', 'environment variable, repeatable', collect)
    .option('--label <k=v>', 'capsule label, repeatable', collect)
    .option('--on <k=v>', 'run only on nodes with this label, repeatable', collect)
    .option('--replicas <n>', 'instances, spread across nodes')
    .option('--restart <policy>', 'never | on-failure | always')
    .option('--strategy <s>', 'binpack (default) | spread')
    .option('--gaming', 'gaming profile: GPU render nodes, input, sound, display sockets (nodes with [capsules] allow_gaming)')
    .option('-p, --publish <port>', 'publish a port: HOST:CONTAINER[/tcp|udp], or CONTAINER[/proto] for a dynamic host port; repeatable', collect)
    .option('--network <mode>', 'bridge (default): own address on the node\'s bridge | host: the node\'s network (nodes with [capsules] allow_host_network) | none: loopback only')
    .option('-d, --detach', 'return once submitted, without waiting for placement')
    .option('--rm', 'remove the capsule once every instance has exited or failed for good')
    .option('-v, --volume <host:container[:ro]>', 'mount a host directory (under the node\'s [capsules] volume_roots); repeatable', collect)
    .option('-w, --workdir <dir>', 'working directory inside the capsule')
    .option('-u, --user <uid[:gid]>', 'run as this numeric user (and group)')
    .option('--entrypoint <cmd>', 'replace the image\'s entrypoint')
    .option('--stop-on-disconnect <duration>', 'fencing: the node stops the capsule after this long cut off (e.g. 30s), and it is replaced only after that; default: it keeps running')
    .action(async (image: string, cmd: string[], o: Record<string, unknown>) => {
      const g = program.opts<GlobalOpts>()
      const num = (flag: string, v: unknown, int = false): number | undefined => {
        if (v === undefined) return undefined
        const n = Number(v)
        if (!Number.isFinite(n) || n < 0 || (int && !Number.isInteger(n))) throw new UserError(`${flag} ${String(v)}: expected a ${int ? 'whole ' : ''}number`, 2)
        return n
      }
      let memoryBytes: number | undefined
      if (o.memory !== undefined) {
        try { memoryBytes = parseMemory(String(o.memory)) } catch (err) { throw new UserError(`--memory ${(err as Error).message}`, 2) }
      }
      const gpus = num('--gpus', o.gpus, true)
      const network = o.network as string | undefined
      if (network !== undefined && !['bridge', 'host', 'none'].includes(network)) throw new UserError(`--network ${network}: expected bridge, host or none`, 2)
      let ports: PortRequest[] = []
      try {
        ports = ((o.publish as string[] | undefined) ?? []).map(parsePortOption)
      } catch (err) {
        if (err instanceof PortOptionError) throw new UserError(err.message, 2)
        throw err
      }
      const problem = portsProblem((network ?? 'bridge') as NetworkMode, ports)
      if (problem !== undefined) throw new UserError(problem, 2)
      // Loaded only when asked for: health-flags.js brings zod (cli-modules.test).
      const health = HEALTH_FLAGS.some(k => o[k] !== undefined) ? (await import('./services/health-flags.js')).healthFromFlags(o as HealthFlags) : {}
      const spec = {
        name: (o.name as string | undefined) ?? defaultName(image),
        image,
        args: cmd,
        env: pairs('--env', o.env as string[] | undefined),
        labels: pairs('--label', o.label as string[] | undefined),
        on: pairs('--on', o.on as string[] | undefined),
        resources: { ...(o.cpu !== undefined ? { cpu: num('--cpu', o.cpu) } : {}), ...(memoryBytes !== undefined ? { memoryBytes } : {}), ...(gpus !== undefined ? { gpus: { count: gpus } } : {}) },
        ...(o.replicas !== undefined ? { replicas: num('--replicas', o.replicas, true) } : {}),
        ...(o.restart !== undefined ? { restart: { policy: o.restart } } : {}),
        ...(o.strategy !== undefined ? { strategy: o.strategy } : {}),
        ...(o.gaming === true ? { gaming: true } : {}),
        ...(o.rm === true ? { autoRemove: true } : {}),
        ...runtimeOptions(o),
        ...(o.stopOnDisconnect !== undefined ? { disconnect: { stopAfterMs: disconnectGrace(String(o.stopOnDisconnect)) } } : {}),
        ...(network !== undefined ? { network } : {}),
        ...(ports.length > 0 ? { ports } : {}),
        ...health
      }
      const c = await client(g)
      mark('sent')
      type Submitted = { spec: { name: string }, instances: Array<{ name: string, node: string | null, reason: string | null, state: string }>, placement?: Placement }
      let rec: Submitted
      try {
        // The agent answers once the scheduler placed it (pushed by its Raft apply), in the same round trip.
        rec = await c.request<Submitted>('POST', o.detach === true ? '/v1/capsules' : `/v1/capsules?wait=placed&timeoutMs=${RUN_WAIT_MS}`, spec)
      } catch (err) {
        if (err instanceof AgentRequestError && err.status === 400) throw new UserError(err.message, 2)
        throw err
      }
      mark('answered')
      if (o.detach === true) { out(g.json === true ? JSON.stringify(rec) : rec.spec.name); return }
      const name = rec.spec.name
      // An agent from before ?wait=placed answers at once, without `placement`: ask until it is settled.
      const placement = rec.placement ?? await pollPlacement(c, name, RUN_WAIT_MS)
      const { placement: _, ...plain } = rec
      out(g.json === true ? JSON.stringify({ ...plain, placement }) : name)
      const why = [...new Set(placement.pending.map(p => p.reason))].join('; ')
      if (placement.verdict && placement.placed === 0) throw new UserError(`run: ${name} cannot be placed: ${why}; it stays pending (bolt-agent rm ${name} to drop it)`)
      if (placement.pending.length > 0) {
        const what = placement.verdict ? why : `not placed within ${RUN_WAIT_MS / 1000} s (${why})`
        process.stderr.write(`bolt-agent: warning: ${name}: ${placement.placed} of ${placement.placed + placement.pending.length} instances placed; ${what}; see bolt-agent ps\n`)
      }
      await writeTimings()
    })
}
