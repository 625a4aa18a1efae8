// Client commands for day-two operations: restart and scale a capsule.
// Light at the top like every client command file: commander types and the
// HTTP client only (test/agent/cli-modules.test.ts).
import type { Command } from 'commander'
import { AgentRequestError } from '../api/client.js'
import { UserError } from '../errors.js'
import { client, out, type GlobalOpts } from '../cli-common.js'

/** The most replicas `scale` takes (the spec's MAX_REPLICAS, repeated here to keep zod out of the client). */
const MAX_SCALE = 1000

function notFound (name: string) {
  return (err: unknown): never => {
    if (err instanceof AgentRequestError && err.status === 404) throw new UserError(`no capsule named ${name}`)
    if (err instanceof AgentRequestError && err.status === 400) throw new UserError(err.message, 2)
    throw err
  }
}

export function registerDay2Commands (program: Command): void {
  program.command('restart').description('run a capsule\'s instances again (placed afresh, old runs stopped); a stopped capsule runs again')
    .argument('<name>', 'a capsule (every instance) or one instance, e.g. web-1')
    .action(async (name: string) => {
      const g = program.opts<GlobalOpts>()
      const r = await (await client(g)).request<{ name: string, restarted: string[] }>('POST', `/v1/capsules/${encodeURIComponent(name)}/restart`, {}).catch(notFound(name))
      out(g.json === true ? JSON.stringify(r) : `${r.restarted.join(', ')} restarting`)
    })

  program.command('scale').description('set a capsule\'s number of instances: new ones are placed, the highest-numbered ones removed')
    .argument('<name>', 'the capsule')
    .argument('<replicas>', `instances, 1 to ${MAX_SCALE}`)
    .action(async (name: string, n: string) => {
      const g = program.opts<GlobalOpts>()
      const replicas = Number(n)
      if (!/^\d+$/.test(n) || replicas < 1 || replicas > MAX_SCALE) throw new UserError(`scale ${name} ${n}: expected a whole number of replicas from 1 to ${MAX_SCALE}`, 2)
      const r = await (await client(g)).request<{ spec: { name: string, replicas: number }, instances: Array<{ name: string }> }>('POST', `/v1/capsules/${encodeURIComponent(name)}/scale`, { replicas }).catch(notFound(name))
      out(g.json === true ? JSON.stringify(r) : `${name} scaled to ${r.spec.replicas} (${r.instances.map(i => i.name).join(', ')})`)
    })

  program.command('rmi').description('remove an image from this node (refused while a capsule here uses it)')
    .argument('<image>', 'the reference as `images` lists it')
    .action(async (ref: string) => {
      const g = program.opts<GlobalOpts>()
      const r = await (await client(g)).request<{ ref: string, removed: boolean }>('POST', '/v1/images/remove', { ref }).catch((err: unknown) => {
        if (err instanceof AgentRequestError && err.status === 400) throw new UserError(err.message, 2)
        throw err
      })
      out(g.json === true ? JSON.stringify(r) : `${ref} removed`)
    })

  // `object put|get` are registered beside the other content commands; these join them.
  const object = program.commands.find(c => c.name() === 'object') ?? program.command('object')
  object.command('ls').description('objects stored in the cluster: id, size, chunks, peer copies')
    .action(async () => {
      const g = program.opts<GlobalOpts>()
      const rows = await (await client(g)).request<Array<{ id: string, size: number, chunks: number, replicas: string[] }>>('GET', '/v1/objects')
      if (g.json === true) { out(JSON.stringify(rows)); return }
      out('ID\tSIZE\tCHUNKS\tCOPIES')
      for (const r of rows) out(`${r.id}\t${r.size}\t${r.chunks}\t${r.replicas.length}`)
    })
  object.command('rm').argument('<id>').description('forget an object in the cluster and drop this node\'s copy (other copies are evicted under their disk quota)')
    .action(async (id: string) => {
      const g = program.opts<GlobalOpts>()
      const r = await (await client(g)).request<{ id: string, removed: boolean }>('DELETE', `/v1/objects/${encodeURIComponent(id)}`).catch((err: unknown) => {
        if (err instanceof AgentRequestError && err.status === 400) throw new UserError(err.message, 2)
        throw err
      })
      out(g.json === true ? JSON.stringify(r) : `${id} removed`)
    })

  const node = program.command('node').description('nodes: drain one, or set whether it takes new capsules')
  node.command('drain').description('move a node\'s capsules elsewhere (each replacement healthy before the old run stops) and make it ineligible')
    .argument('<node>', 'a member\'s name or id')
    .option('--deadline <duration>', 'after this long (30s, 5m, 1h), stop what is still on the node, replaced or not', '1h')
    .option('-d, --detach', 'start the drain and return')
    .action(async (name: string, o: { deadline: string, detach?: boolean }) => {
      const g = program.opts<GlobalOpts>()
      const ms = parseDuration(o.deadline)
      if (ms === undefined) throw new UserError(`--deadline ${o.deadline}: expected a duration such as 30s, 5m or 1h`, 2)
      const c = await client(g)
      // The drain is a record the leader finishes (deadline included): this process only follows it.
      const started = await c.request<{ node: { id: string, name: string }, moving: string[] }>('POST', `/v1/nodes/${encodeURIComponent(name)}/drain`, { deadlineMs: Math.round(ms) }).catch(nodeNotFound)
      const label = started.node.name
      if (g.json !== true) out(`draining ${label}: ${started.moving.length} instance(s) to move${started.moving.length > 0 ? ` (${started.moving.join(', ')})` : ''}`)
      if (o.detach === true) { if (g.json === true) out(JSON.stringify(started)); return }
      let released: string[] = []
      for (;;) {
        const p = await c.request<{ drain: { status: string, released: string[] } | null }>('GET', `/v1/nodes/${encodeURIComponent(started.node.id)}/drain`)
        if (p.drain === null) throw new UserError(`the drain of ${label} is no longer recorded (another drain replaced it?); see bolt-agent ps`)
        if (p.drain.status === 'done') { released = p.drain.released; break }
        await new Promise(resolve => setTimeout(resolve, 500))
      }
      if (released.length > 0 && g.json !== true) process.stderr.write(`bolt-agent: warning: deadline reached; stopped on ${label} before a healthy replacement: ${released.join(', ')}\n`)
      if (g.json === true) out(JSON.stringify({ node: started.node, moved: started.moving.filter(i => !released.includes(i)), released, eligible: false }))
      else out(`${label} drained; it takes no new capsules until: bolt-agent node eligibility ${label} enable`)
    })
  node.command('eligibility').description('whether the scheduler places new capsules on a node')
    .argument('<node>', 'a member\'s name or id')
    .argument('<setting>', 'enable | disable')
    .action(async (name: string, setting: string) => {
      const g = program.opts<GlobalOpts>()
      if (setting !== 'enable' && setting !== 'disable') throw new UserError(`node eligibility ${name} ${setting}: expected enable or disable`, 2)
      const r = await (await client(g)).request<{ node: { id: string, name: string }, eligible: boolean }>('POST', `/v1/nodes/${encodeURIComponent(name)}/eligibility`, { eligible: setting === 'enable' }).catch(nodeNotFound)
      out(g.json === true ? JSON.stringify(r) : `${r.node.name} ${r.eligible ? 'is eligible for new capsules' : 'takes no new capsules (those it runs stay)'}`)
    })
}

function nodeNotFound (err: unknown): never {
  if (err instanceof AgentRequestError && err.status === 404) throw new UserError(err.message)
  throw err
}

/** 30s, 5m, 1h30m, 500ms: milliseconds, or undefined. */
export function parseDuration (text: string): number | undefined {
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(text)) return undefined
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
  let ms = 0
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) ms += Number(m[1]) * (unit[m[2] as string] as number)
  return ms
}

/** `--stop-on-disconnect`: a duration of at least 1 s, in milliseconds; bad usage otherwise. */
export function disconnectGrace (text: string): number {
  const ms = parseDuration(text)
  if (ms === undefined || ms < 1000 || ms > 86_400_000) throw new UserError(`--stop-on-disconnect ${text}: expected a duration from 1s to 24h (e.g. 30s, 5m)`, 2)
  return Math.round(ms)
}

/** `-v HOST:CONTAINER[:ro]` as the capsule spec's volume; bad usage otherwise. */
export function parseVolume (text: string): { host: string, target: string, readOnly: boolean } {
  const parts = text.split(':')
  const ro = parts.length === 3 && (parts[2] === 'ro' || parts[2] === 'rw') ? parts.pop() === 'ro' : false
  const [host, target] = parts
  if (parts.length !== 2 || host === undefined || target === undefined || !host.startsWith('/') || !target.startsWith('/')) {
    throw new UserError(`-v ${text}: expected HOST:CONTAINER[:ro] with absolute paths, e.g. /srv/data:/data:ro`, 2)
  }
  return { host, target, readOnly: ro }
}

/** `-v`, `-w`, `-u`, `--entrypoint` of `run`, checked, as capsule spec fields. */
export function runtimeOptions (o: { volume?: unknown, workdir?: unknown, user?: unknown, entrypoint?: unknown }): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const vols = (o.volume as string[] | undefined) ?? []
  if (vols.length > 0) out.volumes = vols.map(parseVolume)
  if (o.workdir !== undefined) {
    if (!String(o.workdir).startsWith('/')) throw new UserError(`-w ${String(o.workdir)}: expected an absolute path inside the capsule`, 2)
    out.workdir = String(o.workdir)
  }
  if (o.user !== undefined) {
    if (!/^\d{1,10}(:\d{1,10})?$/.test(String(o.user))) throw new UserError(`-u ${String(o.user)}: expected a numeric uid or uid:gid (names are not resolved)`, 2)
    out.user = String(o.user)
  }
  if (o.entrypoint !== undefined) {
    if (String(o.entrypoint) === '') throw new UserError('--entrypoint: expected a command', 2)
    out.entrypoint = [String(o.entrypoint)]
  }
  return out
}
