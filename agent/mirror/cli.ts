// `bolt-agent mirror config containerd|docker|podman`: prints the snippet
// that points that client at this node's registry mirror (asked from the agent).
import { Argument, type Command } from 'commander'
import { client, out, type GlobalOpts } from '../cli-common.js'
import { MIRROR_CLIENT_KINDS } from './host-config.js'
import type { MirrorInfo } from './agent-mirror.js'

export function registerMirrorCommands (program: Command): void {
  const mirror = program.command('mirror').description('the registry mirror on this node (Docker, containerd, podman, skopeo pull through it)')
  mirror.command('config').description('print the configuration snippet for a container client')
    .addArgument(new Argument('<client>', 'which client').choices(MIRROR_CLIENT_KINDS))
    .action(async (kind: string) => {
      const g = program.opts<GlobalOpts>()
      const c = await client(g)
      const { snippet } = await c.request<{ snippet: string }>('GET', `/v1/mirror/config/${kind}`)
      if (g.json === true) { out(JSON.stringify({ client: kind, snippet })); return }
      process.stdout.write(snippet)
    })
  mirror.command('status').description('the mirror\'s address and counters')
    .action(async () => {
      const g = program.opts<GlobalOpts>()
      const info = await (await client(g)).request<MirrorInfo & { stats: unknown }>('GET', '/v1/mirror')
      out(g.json === true ? JSON.stringify(info) : `mirror  ${info.url ?? 'not running'}   upstream ${info.upstream}\n${JSON.stringify(info.stats)}`)
    })
}
