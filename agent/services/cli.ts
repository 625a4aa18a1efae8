// The command line of services: `run`'s health flags (--check and its
// timings, --service), and the `services`, `inspect` and `exec` commands.
// Flags become the capsule spec's `health` through the same parsers the API
// and stacks use; a bad one is a usage error (exit 2) naming the flag.
import type { Command } from 'commander'
import { UserError } from '../errors.js'
import { client, out, type GlobalOpts } from '../cli-common.js'
import type { HealthCheck } from './health-spec.js'
import { AgentRequestError } from '../api/client.js'

// healthFromFlags lives in health-flags.ts: it needs the zod schemas, which
// `run` loads only when it is given --check or --service.
export interface HealthFlags {
  check?: string
  checkInterval?: string
  checkTimeout?: string
  healthyThreshold?: string
  unhealthyThreshold?: string
  restartUnhealthy?: boolean
  service?: string
}

/** Adds the health and service flags to `run`. */
export function addHealthOptions (cmd: Command): Command {
  return cmd
    .option('--check <check>', 'health check: tcp:PORT | http:[PORT]/PATH | exec:CMD')
    .option('--check-interval <duration>', 'time between checks, e.g. 10s (default 10s)')
    .option('--check-timeout <duration>', 'how long one check may take (default 2s)')
    .option('--healthy-threshold <n>', 'passes in a row to become healthy (default 1)')
    .option('--unhealthy-threshold <n>', 'failures in a row to become unhealthy (default 3)')
    .option('--restart-unhealthy', 'restart an instance when it turns unhealthy')
    .option('--service <name>', 'service catalog and DNS name (default: the capsule name)')
}

interface ServiceRow { name: string, instances: Array<{ instance: string, node: string, address: string, ports: Array<{ host: number, container: number, proto: string }>, health: string }> }

/** `host:port` with brackets around an IPv6 host. */
export function hostPort (address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`
}

export function registerServiceCommands (program: Command): void {
  program.command('services').description('every service in the catalog and its instances (DNS answers the healthy ones)')
    .action(async () => {
      const g = program.opts<GlobalOpts>()
      const rows = await (await client(g)).request<ServiceRow[]>('GET', '/v1/services')
      if (g.json === true) { out(JSON.stringify(rows)); return }
      if (rows.length === 0) { out('no services (a running capsule with published ports is one)'); return }
      const table = [['NAME', 'HEALTHY', 'INSTANCES'], ...rows.map(r => [
        r.name,
        `${r.instances.filter(i => i.health === 'healthy').length}/${r.instances.length} healthy`,
        r.instances.flatMap(i => i.ports.map(p => `${hostPort(i.address, p.host)}/${p.proto}${i.health !== 'healthy' ? ` (${i.health})` : ''}`)).join('  ')
      ])]
      const widths = table[0]!.map((_, i) => Math.max(...table.map(r => (r[i] ?? '').length)))
      for (const r of table) out(r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)).join('  '))
    })
}

interface InspectJson {
  name: string
  desired: string
  spec: { image: string, args: string[], service?: string, health?: { check: HealthCheck, intervalMs: number, timeoutMs: number, healthyThreshold: number, unhealthyThreshold: number, restartUnhealthy: boolean } }
  instances: Array<{ name: string, node: string | null, nodeName: string | null, address: string | null, ports: Array<{ host: number, container: number, proto: string }>, health: string | null, state: string, reason: string | null, exitCode: number | null, restarts: number }>
}

export function registerInspectExec (program: Command): void {
  program.command('inspect').description('a capsule\'s spec and instances: node, ports, health, last exit')
    .argument('<name>', 'capsule or instance name')
    .action(async (name: string) => {
      const g = program.opts<GlobalOpts>()
      let r: InspectJson
      try {
        r = await (await client(g)).request<InspectJson>('GET', `/v1/capsules/${encodeURIComponent(name)}`)
      } catch (err) {
        if (err instanceof AgentRequestError && err.status === 404) throw new UserError(`no capsule or instance named ${name} (see bolt-agent ps)`)
        throw err
      }
      if (g.json === true) { out(JSON.stringify(r)); return }
      out(`name     ${r.name} (${r.desired})`)
      out(`image    ${r.spec.image}${r.spec.args.length > 0 ? `  ${r.spec.args.join(' ')}` : ''}`)
      out(`service  ${r.spec.service ?? r.name}`)
      const h = r.spec.health
      // Loaded here: a client command loads no zod until it needs it (cli-modules.test).
      const { formatCheck } = await import('./health-spec.js')
      if (h !== undefined) out(`check    ${formatCheck(h.check)} every ${h.intervalMs} ms, timeout ${h.timeoutMs} ms, healthy after ${h.healthyThreshold}, unhealthy after ${h.unhealthyThreshold}${h.restartUnhealthy ? ', restart when unhealthy' : ''}`)
      for (const i of r.instances) {
        const ports = i.ports.map(p => `${i.address !== null ? hostPort(i.address, p.host) : p.host}/${p.proto} -> ${p.container}/${p.proto}`).join(', ')
        out(`${i.name}  ${i.state}${i.health !== null ? ` ${i.health}` : ''}  node ${i.nodeName ?? i.node ?? '-'}${ports !== '' ? `  ${ports}` : ''}  restarts ${i.restarts}${i.exitCode !== null ? `  last exit ${i.exitCode}` : ''}${i.reason !== null ? `  (${i.reason})` : ''}`)
      }
    })

  program.command('exec').description('run a command inside a running capsule; its output and exit code pass through')
    .argument('<name>', 'capsule or instance name')
    .argument('<cmd...>', 'command and arguments (after --)')
    .option('--instance <i>', 'which instance (name or index; default: the first running)')
    .option('--timeout <duration>', 'give up after this long (default 60s)')
    .action(async (name: string, cmd: string[], o: { instance?: string, timeout?: string }) => {
      const g = program.opts<GlobalOpts>()
      let timeoutMs: number | undefined
      if (o.timeout !== undefined) {
        const { parseDuration } = await import('./health-spec.js')
        try { timeoutMs = parseDuration(o.timeout) } catch (err) { throw new UserError(`--timeout ${(err as Error).message}`, 2) }
      }
      let r: { exitCode: number, stdout: string, stderr: string }
      try {
        r = await (await client(g)).request('POST', `/v1/capsules/${encodeURIComponent(name)}/exec`, { argv: cmd, ...(o.instance !== undefined ? { instance: o.instance } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : {}) })
      } catch (err) {
        if (err instanceof AgentRequestError && err.status === 400) throw new UserError(err.message, 2)
        if (err instanceof AgentRequestError && (err.status === 404 || err.status === 409)) throw new UserError(`exec: ${err.message}`)
        throw err
      }
      if (g.json === true) out(JSON.stringify(r))
      else {
        process.stdout.write(r.stdout)
        process.stderr.write(r.stderr)
      }
      if (r.exitCode !== 0) throw new ExitCode(r.exitCode)
    })
}

/** The command's own exit code, passed through without a message. */
export class ExitCode extends UserError {
  override name = 'ExitCode'
  constructor (code: number) { super('', code) }
}
