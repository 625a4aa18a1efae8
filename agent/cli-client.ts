// Client commands added by later parts (kv, capsules, content). Each talks to
// the agent API and prints plain text, or JSON with --json.
import type { Command } from 'commander'
import { AgentRequestError } from './api/client.js'
import { UserError } from './errors.js'
import { client, out, type GlobalOpts } from './cli-common.js'

export function registerClientCommands (program: Command): void {
  const kv = program.command('kv').description('a small linearizable key-value store in the Raft state')
  kv.command('get').argument('<key>').description('print the value alone (exit 1 if the key is absent)')
    .action(async (key: string) => {
      const g = program.opts<GlobalOpts>()
      try {
        const r = await (await client(g)).request<{ key: string, value: string }>('GET', `/v1/kv/${encodeURIComponent(key)}`)
        out(g.json === true ? JSON.stringify(r) : r.value)
      } catch (err) {
        if (err instanceof AgentRequestError && err.status === 404) throw new UserError(`no such key: ${key}`)
        throw err
      }
    })
  kv.command('put').argument('<key>').argument('<value>').description('set KEY to VALUE')
    .action(async (key: string, value: string) => {
      const g = program.opts<GlobalOpts>()
      const r = await (await client(g)).request('PUT', `/v1/kv/${encodeURIComponent(key)}`, { value })
      if (g.json === true) out(JSON.stringify(r))
    })
  kv.command('cas').argument('<key>').argument('<old>').argument('<new>').description('set KEY to NEW only if it is OLD (exit 1 when it is not)')
    .action(async (key: string, old: string, next: string) => {
      const g = program.opts<GlobalOpts>()
      const r = await (await client(g)).request<{ swapped: boolean, current?: string | null }>('POST', `/v1/kv/${encodeURIComponent(key)}/cas`, { old, new: next })
      if (g.json === true) out(JSON.stringify(r))
      if (!r.swapped) throw new UserError(`cas failed: ${key} is ${r.current === null || r.current === undefined ? 'absent' : JSON.stringify(r.current)}, not ${JSON.stringify(old)}`)
    })
}
