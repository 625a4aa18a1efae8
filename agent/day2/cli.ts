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
}
