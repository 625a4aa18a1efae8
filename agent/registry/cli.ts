// `bolt-agent registry token`: the push credential for this agent's registry
// endpoint; `bolt-agent images --cluster`: the cluster's own images. Light
// imports only (the client CLI loads no zod/pino/libp2p at top level).
import type { Command } from 'commander'
import { client, out, type GlobalOpts } from '../cli-common.js'

export interface RegistryToken { registry: string | null, username: string, password: string, enabled: boolean }
interface ClusterImages { registry: string, replicas: number, images: Array<{ repo: string, tag: string, digest: string, mediaType: string, bytes: number, holders: string[] }> }

export function registerRegistryCommands (program: Command): void {
  const registry = program.command('registry').description('the cluster registry: push images to any agent, run them as bolt.local/REPO:TAG')
  registry.command('token').description('print the push credential (for skopeo --dest-creds, podman/docker login)')
    .action(async () => {
      const g = program.opts<GlobalOpts>()
      const t = await (await client(g)).request<RegistryToken>('GET', '/v1/registry/token')
      if (g.json === true) { out(JSON.stringify({ registry: t.registry, username: t.username, password: t.password })); return }
      out(t.password)
      if (t.registry !== null) process.stderr.write(`# podman login --tls-verify=false -u ${t.username} -p TOKEN ${t.registry}   (or skopeo copy --dest-creds ${t.username}:TOKEN ...)\n`)
    })
}

/** `images --cluster`: each tag with its size and how many members hold its blobs. */
export async function printClusterImages (g: GlobalOpts, formatBytes: (n: number) => string): Promise<void> {
  const r = await (await client(g)).request<ClusterImages>('GET', '/v1/registry/images')
  if (g.json === true) { out(JSON.stringify(r.images.map(i => ({ ref: `${r.registry}/${i.repo}:${i.tag}`, digest: i.digest, mediaType: i.mediaType, size: i.bytes, replicas: i.holders.length, holders: i.holders })))); return }
  out('REF\tDIGEST\tSIZE\tREPLICAS')
  for (const i of r.images) out(`${r.registry}/${i.repo}:${i.tag}\t${i.digest.slice(0, 19)}\t${formatBytes(i.bytes)}\t${i.holders.length}/${r.replicas}`)
}
