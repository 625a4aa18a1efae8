// `bolt-agent up -f STACK.toml`: applies the stack's difference from what
// runs. It prints the plan (added, changed, removed), then creates new
// capsules in depends_on order, replaces changed ones one instance at a time
// (each replacement healthy before the next one goes), and removes the
// capsules the file no longer lists. A rolling update is a rollout record in
// the Raft state that the leader drives (state/rollouts.ts): this process
// only submits it and follows its progress, so killing it changes nothing.
// A replacement that fails stops the rollout: the instances not yet replaced
// keep serving the previous spec, which the leader puts back.
import { basename } from 'node:path'
import { readFile } from 'node:fs/promises'
import { AgentRequestError, type ApiClient } from '../api/client.js'
import { UserError } from '../errors.js'
import { out, type GlobalOpts } from '../cli-common.js'
import { parseStack, serviceEnv, specOf, startOrder, StackError, type Stack } from '../stack.js'
import { replacesInstances, STACK_LABEL, type StackPlan } from './stack-plan.js'

/** How long `up` waits for a healthy dependency to show in the service catalog (a dependency without ports never does). */
const SERVICE_ENV_WAIT_MS = 5000
const POLL_MS = 300

interface Row { name: string, capsule: string, state: string, health: string | null, reason: string | null, restarts: number, exitCode: number | null }

/** The stack's name: `name` in the file, else the file's base name made a capsule-like name. */
export function stackName (stack: Stack, file: string): string {
  return stack.name ?? (basename(file).replace(/\.toml$/i, '').toLowerCase().replace(/[^a-z0-9_.-]/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 63) || 'stack')
}

function withStackLabel (spec: Record<string, unknown>, stack: string): Record<string, unknown> {
  return { ...spec, labels: { ...(spec.labels as Record<string, string>), [STACK_LABEL]: stack } }
}

export function formatPlan (stack: string, plan: StackPlan): string[] {
  const lines = [`plan for stack ${stack}: ${plan.added.length} to add, ${plan.changed.length} to change, ${plan.removed.length} to remove`]
  for (const n of plan.added) lines.push(`  + ${n}`)
  for (const c of plan.changed) {
    const scale = c.replicas !== null ? `replicas ${c.replicas.from} -> ${c.replicas.to}` : ''
    const rest = c.fields.filter(f => f !== 'replicas')
    lines.push(`  ~ ${c.name} (${[rest.length > 0 ? `changed: ${rest.join(', ')}; replaced one instance at a time` : '', scale].filter(Boolean).join('; ')})`)
  }
  for (const n of plan.removed) lines.push(`  - ${n}`)
  for (const n of plan.unchanged) lines.push(`  = ${n}`)
  return lines
}

async function envFor (c: ApiClient, stack: Stack, name: string, wait: boolean): Promise<Record<string, string>> {
  const deps = (stack.capsules[name]?.depends_on ?? []).map(d => ({ capsule: d, service: stack.capsules[d]?.service ?? d }))
  if (deps.length === 0) return {}
  // The catalog follows health by one Raft round: give a dependency that is a service a moment to appear.
  const until = Date.now() + (wait ? SERVICE_ENV_WAIT_MS : 0)
  for (;;) {
    const catalog = await c.request<Array<{ name: string, instances: Array<{ address: string, ports: Array<{ host: number }>, health: string }> }>>('GET', '/v1/services')
    const env = serviceEnv(deps, catalog)
    if (Object.keys(env).length === deps.length || Date.now() >= until) return env
    await new Promise(resolve => setTimeout(resolve, 250))
  }
}

async function plan (c: ApiClient, stack: string, specs: Array<Record<string, unknown>>): Promise<StackPlan> {
  try {
    return (await c.request<{ plan: StackPlan }>('POST', '/v1/stacks/plan', { stack, specs })).plan
  } catch (err) {
    if (err instanceof AgentRequestError && err.status === 400) throw new UserError(`up: ${err.message}`, 2)
    throw err
  }
}

export async function runUp (g: GlobalOpts, connect: () => Promise<ApiClient>, o: { file: string, dryRun?: boolean, detach?: boolean }): Promise<void> {
  let stack: Stack
  let order: string[]
  try {
    stack = parseStack(await readFile(o.file, 'utf8'), o.file)
    order = startOrder(stack)
  } catch (err) {
    if (err instanceof StackError || (err as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`up: ${(err as Error).message}`, 2)
    throw err
  }
  // The file is checked before any agent is asked: a bad stack is bad usage (exit 2) with or without one.
  const c = await connect()
  const name = stackName(stack, o.file)
  const specFor = (n: string, env: Record<string, string>): Record<string, unknown> => withStackLabel(specOf(n, stack.capsules[n]!, env), name)
  const first = await plan(c, name, await Promise.all(order.map(async n => specFor(n, await envFor(c, stack, n, false)))))
  if (g.json === true) out(JSON.stringify({ plan: first }))
  else for (const l of formatPlan(name, first)) out(l)
  if (o.dryRun === true) return

  for (const n of order) {
    const entry = stack.capsules[n]!
    const spec = specFor(n, await envFor(c, stack, n, o.detach !== true))
    // Planned again with the dependencies' current addresses: a dependency replaced just now changes them.
    const p = await plan(c, name, [spec])
    const timeoutMs = entry.health?.timeout_ms ?? 120_000
    const settle = async (what: string): Promise<void> => {
      if (o.detach !== true) await waitAllHealthy(c, n, entry.health?.check !== undefined, timeoutMs, entry.health?.tcp)
      report(g, n, what, o.detach === true)
    }
    if (p.added.includes(n)) {
      try {
        await c.request('POST', '/v1/capsules', spec)
      } catch (err) {
        if (!(err instanceof AgentRequestError && err.status === 409)) throw err
      }
      await settle('created')
      continue
    }
    const change = p.changed.find(x => x.name === n)
    if (change === undefined) {
      // A rollout an earlier `up` started (and was killed or detached from) may still run: follow it.
      const running = await deployment(c, n)
      if (running?.status === 'running' && o.detach !== true) await followDeployment(g, c, n, running.id)
      await settle('unchanged')
      continue
    }
    if (replacesInstances(change.fields)) {
      const d = await c.request<Deployment>('POST', `/v1/capsules/${encodeURIComponent(n)}/deployment`, { spec, timeoutMs })
      if (o.detach === true) { if (g.json !== true) out(`${n} rolling out (${d.pending.join(', ')}); run up again to follow`); continue }
      await followDeployment(g, c, n, d.id)
    } else {
      await c.request('PUT', `/v1/capsules/${encodeURIComponent(n)}`, spec)
    }
    await settle('updated')
  }
  for (const n of first.removed) {
    try {
      await c.request('DELETE', `/v1/capsules/${encodeURIComponent(n)}`)
      report(g, n, 'removed', false)
    } catch (err) {
      if (!(err instanceof AgentRequestError && err.status === 404)) throw err
    }
  }
}

/** A rollout record as `GET /v1/capsules/NAME/deployment` answers it (state/rollouts.ts). */
interface Deployment { id: string, status: 'running' | 'succeeded' | 'failed', pending: string[], replaced: string[], current: { instance: string } | null, reason: string | null }

async function deployment (c: ApiClient, capsule: string): Promise<Deployment | undefined> {
  try {
    return await c.request<Deployment>('GET', `/v1/capsules/${encodeURIComponent(capsule)}/deployment`)
  } catch (err) {
    if (err instanceof AgentRequestError && err.status === 404) return undefined
    throw err
  }
}

/** Prints each instance as the leader replaces it, until rollout `id` ends; a failed one is the command's failure. */
async function followDeployment (g: GlobalOpts, c: ApiClient, capsule: string, id: string): Promise<void> {
  let shown = 0
  for (;;) {
    const d = await deployment(c, capsule)
    if (d === undefined || d.id !== id) throw new UserError(`up: the rollout of ${capsule} was replaced by another one (${d === undefined ? 'the capsule is gone' : 'a later up'}); run up again to follow it`)
    for (const inst of d.replaced.slice(shown)) if (g.json !== true) out(`${inst} replaced`)
    shown = d.replaced.length
    if (d.status === 'failed') throw new UserError(`up: rollout of ${capsule} stopped: ${d.reason ?? 'no reason'} (fix the stack and run up again)`)
    if (d.status === 'succeeded') return
    await new Promise(resolve => setTimeout(resolve, POLL_MS))
  }
}

function report (g: GlobalOpts, capsule: string, what: string, detached: boolean): void {
  const state = what === 'removed' ? 'removed' : detached ? 'submitted' : 'running'
  out(g.json === true ? JSON.stringify({ capsule, state, action: what }) : `${capsule} ${state}`)
}

async function rows (c: ApiClient, capsule: string): Promise<Row[]> {
  return (await c.request<Row[]>('GET', '/v1/capsules')).filter(r => r.capsule === capsule)
}

const ready = (r: Row, checked: boolean): boolean => r.state === 'running' && (!checked || r.health === 'healthy')

async function waitAllHealthy (c: ApiClient, capsule: string, checked: boolean, timeoutMs: number, tcp?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const mine = await rows(c, capsule)
    const failed = mine.find(r => r.state === 'failed')
    if (failed !== undefined) throw new UserError(`up: ${failed.name} failed (${failed.reason ?? 'no reason'}); later capsules not started`)
    // A node-side check counts once every instance reports healthy; a tcp address is probed from here.
    if (mine.length > 0 && mine.every(r => ready(r, checked)) && (tcp === undefined || await tcpOk(tcp))) return
    if (Date.now() > deadline) throw new UserError(`up: ${capsule} not healthy within ${timeoutMs} ms (${mine.map(r => `${r.name}=${r.state}${r.health !== null ? `/${r.health}` : ''}${r.reason !== null ? ` ${r.reason}` : ''}`).join(', ')})`)
    await new Promise(resolve => setTimeout(resolve, POLL_MS))
  }
}

async function tcpOk (hostPort: string): Promise<boolean> {
  const { connect } = await import('node:net')
  const i = hostPort.lastIndexOf(':')
  return await new Promise(resolve => {
    const s = connect({ host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)), timeout: 1000 })
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
    s.once('timeout', () => { s.destroy(); resolve(false) })
  })
}
