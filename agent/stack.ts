// Stacks (`bolt-agent up|down -f stack.toml`): several capsules with
// depends_on ordering and health checks. The file is TOML checked by zod; the
// order is a topological sort that refuses cycles.
import { z } from 'zod'
import { parse as parseToml } from 'smol-toml'
import { MAX_PORTS, NAME_RE, NetworkModeSchema, SERVICE_NAME_RE, parseMemory, portsProblem, type PortRequest } from './scheduler/spec.js'
import { HealthSchema, parseCheck, parseDuration, type HealthInput } from './services/health-spec.js'
import { parsePortOption } from './ports.js'

export class StackError extends Error {
  override name = 'StackError'
}

const StackCapsuleSchema = z.strictObject({
  image: z.string().min(1),
  args: z.array(z.string()).default([]),
  env: z.record(z.string(), z.string()).default({}),
  cpu: z.number().min(0).optional(),
  memory: z.string().superRefine((v, ctx) => {
    try { parseMemory(v) } catch (err) { ctx.addIssue({ code: 'custom', message: (err as Error).message }) }
  }).optional(),
  gpus: z.number().int().min(0).optional(),
  replicas: z.number().int().min(1).default(1),
  on: z.record(z.string(), z.string()).default({}),
  labels: z.record(z.string(), z.string()).default({}),
  restart: z.enum(['never', 'on-failure', 'always']).default('on-failure'),
  /** As `run --network`: host only on nodes whose config allows it. */
  network: NetworkModeSchema.optional(),
  depends_on: z.array(z.string()).default([]),
  /** As `run --stop-on-disconnect`: the node stops the capsule after this long cut off (fencing). */
  stop_on_disconnect: z.string().max(32).optional(),
  /** Catalog and DNS name; default: the capsule's name. */
  service: z.string().regex(SERVICE_NAME_RE, 'a DNS label: lowercase letters, digits and -').optional(),
  /** As `run -p`: "HOST:CONTAINER[/tcp|udp]" or "CONTAINER[/tcp|udp]". */
  ports: z.array(z.string().max(64)).max(MAX_PORTS).default([]),
  health: z.strictObject({
    /** HOST:PORT that must accept a TCP connection (checked by `up` from where it runs). */
    tcp: z.string().regex(/^[^\s:]+:\d+$/).optional(),
    /** How long `up` waits for this capsule to be healthy. */
    timeout_ms: z.number().int().min(100).default(60_000),
    /** The node-side check, as `--check`: tcp:PORT, http:[PORT]/PATH or exec:CMD. */
    check: z.string().max(4200).optional(),
    interval: z.string().max(32).optional(),
    check_timeout: z.string().max(32).optional(),
    healthy_threshold: z.number().int().min(1).max(100).optional(),
    unhealthy_threshold: z.number().int().min(1).max(100).optional(),
    restart_unhealthy: z.boolean().optional()
  }).optional()
})
export const StackSchema = z.strictObject({
  name: z.string().regex(NAME_RE).optional(),
  capsules: z.record(z.string().regex(NAME_RE), StackCapsuleSchema)
})
export type Stack = z.infer<typeof StackSchema>
export type StackCapsule = z.infer<typeof StackCapsuleSchema>

export function parseStack (text: string, source: string): Stack {
  let raw: unknown
  try { raw = parseToml(text) } catch (err) { throw new StackError(`${source} is not valid TOML: ${(err as Error).message.split('\n')[0] ?? ''}`) }
  const r = StackSchema.safeParse(raw)
  if (!r.success) {
    const i = r.error.issues[0]
    throw new StackError(`${source}: ${i?.path.join('.') ?? ''}: ${i?.message ?? 'invalid'}`)
  }
  // Static host ports: each one is asked by one capsule of the stack at most (two would wait on each other forever on a one-node cluster).
  const owner = new Map<string, string>()
  for (const [name, c] of Object.entries(r.data.capsules)) {
    stackHealth(`${source}: capsules.${name}.health`, c)
    if (c.stop_on_disconnect !== undefined) {
      try { parseDuration(c.stop_on_disconnect) } catch (err) { throw new StackError(`${source}: capsules.${name}.stop_on_disconnect: ${(err as Error).message}`) }
    }
    for (const d of c.depends_on) if (r.data.capsules[d] === undefined) throw new StackError(`${source}: capsules.${name}.depends_on names ${d}, which the stack does not define`)
    const ports = stackPorts(source, name, c)
    const problem = portsProblem(c.network ?? 'bridge', ports)
    if (problem !== undefined) throw new StackError(`${source}: capsules.${name}.ports: ${problem}`)
    for (const p of ports) {
      const host = c.network === 'host' ? p.container : p.host
      if (host === undefined) continue
      const k = `${host}/${p.proto}`
      const other = owner.get(k)
      if (other !== undefined) throw new StackError(`${source}: capsules ${other} and ${name} both ask for host port ${k} (give one another port, or a dynamic one: "${p.container}/${p.proto}")`)
      owner.set(k, name)
    }
  }
  return r.data
}

/** Dependencies first; throws StackError on a cycle. */
export function startOrder (stack: Stack): string[] {
  const out: string[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (n: string, path: string[]): void => {
    if (state.get(n) === 'done') return
    if (state.get(n) === 'visiting') throw new StackError(`depends_on has a cycle: ${[...path, n].join(' -> ')}`)
    state.set(n, 'visiting')
    for (const d of stack.capsules[n]?.depends_on ?? []) visit(d, [...path, n])
    state.set(n, 'done')
    out.push(n)
  }
  for (const n of Object.keys(stack.capsules).sort()) visit(n, [])
  return out
}

/** The node-side health check of a stack entry, or undefined; StackError naming the key on bad input. */
export function stackHealth (where: string, c: StackCapsule): HealthInput | undefined {
  const h = c.health
  if (h?.check === undefined) {
    if (h !== undefined && (h.interval ?? h.check_timeout ?? h.healthy_threshold ?? h.unhealthy_threshold ?? h.restart_unhealthy) !== undefined) throw new StackError(`${where}: interval, check_timeout, the thresholds and restart_unhealthy need check`)
    return undefined
  }
  const at = (key: string, f: () => number): number => { try { return f() } catch (err) { throw new StackError(`${where}.${key}: ${(err as Error).message}`) } }
  let check
  try { check = parseCheck(h.check) } catch (err) { throw new StackError(`${where}.check: ${(err as Error).message}`) }
  const out: HealthInput = {
    check,
    ...(h.interval !== undefined ? { intervalMs: at('interval', () => parseDuration(h.interval ?? '')) } : {}),
    ...(h.check_timeout !== undefined ? { timeoutMs: at('check_timeout', () => parseDuration(h.check_timeout ?? '')) } : {}),
    ...(h.healthy_threshold !== undefined ? { healthyThreshold: h.healthy_threshold } : {}),
    ...(h.unhealthy_threshold !== undefined ? { unhealthyThreshold: h.unhealthy_threshold } : {}),
    ...(h.restart_unhealthy !== undefined ? { restartUnhealthy: h.restart_unhealthy } : {})
  }
  const r = HealthSchema.safeParse(out)
  if (!r.success) throw new StackError(`${where}: ${r.error.issues[0]?.path.join('.') ?? ''}: ${r.error.issues[0]?.message ?? 'invalid'}`)
  return out
}

function stackPorts (source: string, name: string, c: StackCapsule): PortRequest[] {
  try {
    return c.ports.map(parsePortOption)
  } catch (err) {
    throw new StackError(`${source}: capsules.${name}.ports: ${(err as Error).message}`)
  }
}

/** The capsule spec the API takes, for one stack entry. */
export function specOf (name: string, c: StackCapsule, env: Record<string, string> = {}): Record<string, unknown> {
  const health = stackHealth(`capsules.${name}.health`, c)
  return {
    ...(health !== undefined ? { health } : {}),
    ...(c.service !== undefined ? { service: c.service } : {}),
    name,
    image: c.image,
    args: c.args,
    env: { ...env, ...c.env },
    labels: { ...c.labels },
    on: c.on,
    replicas: c.replicas,
    restart: { policy: c.restart },
    ...(c.network !== undefined ? { network: c.network } : {}),
    ...(c.stop_on_disconnect !== undefined ? { disconnect: { stopAfterMs: parseDuration(c.stop_on_disconnect) } } : {}),
    ports: c.ports.map(parsePortOption),
    resources: { ...(c.cpu !== undefined ? { cpu: c.cpu } : {}), ...(c.memory !== undefined ? { memoryBytes: parseMemory(c.memory) } : {}), ...(c.gpus !== undefined ? { gpus: { count: c.gpus } } : {}) }
  }
}

/** `BOLT_SERVICE_<NAME>`: the variable a dependent capsule gets for service NAME. */
export function serviceEnvName (service: string): string {
  return `BOLT_SERVICE_${service.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`
}

interface CatalogService { name: string, instances: Array<{ address: string, ports: Array<{ host: number }>, health: string }> }

/**
 * The environment a capsule gets for the services it depends on:
 * `BOLT_SERVICE_<NAME>=addr:port,...` over their healthy instances' host
 * ports (like Docker links or Nomad's upstreams). A dependency that is no
 * service (no published ports) gets no variable.
 */
export function serviceEnv (dependsOn: Array<{ capsule: string, service: string }>, catalog: CatalogService[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const d of dependsOn) {
    const s = catalog.find(x => x.name === d.service)
    const list = (s?.instances ?? []).filter(i => i.health === 'healthy').flatMap(i => i.ports.map(p => i.address.includes(':') ? `[${i.address}]:${p.host}` : `${i.address}:${p.host}`))
    if (list.length > 0) out[serviceEnvName(d.service)] = list.join(',')
  }
  return out
}
