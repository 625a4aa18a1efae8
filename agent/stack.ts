// Stacks (`bolt-agent up|down -f stack.toml`): several capsules with
// depends_on ordering and health checks. The file is TOML checked by zod; the
// order is a topological sort that refuses cycles.
import { z } from 'zod'
import { parse as parseToml } from 'smol-toml'
import { MAX_PORTS, NAME_RE, NetworkModeSchema, parseMemory, portsProblem, type PortRequest } from './scheduler/spec.js'
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
  depends_on: z.array(z.string()).default([]),
  network: NetworkModeSchema.optional(),
  /** As `run -p`: "HOST:CONTAINER[/tcp|udp]" or "CONTAINER[/tcp|udp]". */
  ports: z.array(z.string().max(64)).max(MAX_PORTS).default([]),
  health: z.strictObject({
    /** HOST:PORT that must accept a TCP connection. */
    tcp: z.string().regex(/^[^\s:]+:\d+$/).optional(),
    timeout_ms: z.number().int().min(100).default(60_000)
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

function stackPorts (source: string, name: string, c: StackCapsule): PortRequest[] {
  try {
    return c.ports.map(parsePortOption)
  } catch (err) {
    throw new StackError(`${source}: capsules.${name}.ports: ${(err as Error).message}`)
  }
}

/** The capsule spec the API takes, for one stack entry. */
export function specOf (name: string, c: StackCapsule): Record<string, unknown> {
  return {
    name,
    image: c.image,
    args: c.args,
    env: c.env,
    labels: { ...c.labels },
    on: c.on,
    replicas: c.replicas,
    restart: { policy: c.restart },
    ...(c.network !== undefined ? { network: c.network } : {}),
    ports: c.ports.map(parsePortOption),
    resources: { ...(c.cpu !== undefined ? { cpu: c.cpu } : {}), ...(c.memory !== undefined ? { memoryBytes: parseMemory(c.memory) } : {}), ...(c.gpus !== undefined ? { gpus: { count: c.gpus } } : {}) }
  }
}
