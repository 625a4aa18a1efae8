// `bolt-agent s3 key create|list|delete`: access keys of the S3 endpoint,
// kept in the Raft state (so every agent's endpoint accepts them). Loads
// nothing heavy: the agent does the work.
import type { Command } from 'commander'
import { client, out, type GlobalOpts } from '../cli-common.js'
import { UserError } from '../errors.js'

interface CreatedKey { accessKey: string, secretKey: string, endpoint: string | null, bucket: string | null, readOnly: boolean }
interface KeyRow { accessKey: string, bucket: string | null, readOnly: boolean, created: string }

export function registerS3Commands (program: Command): void {
  // Beside `object put|get` (cli-client.ts): objects stored through S3 below their copies.
  const object = program.commands.find(c => c.name() === 'object') ?? program.command('object')
  object.command('status').description('S3 objects with fewer live copies than their bucket asks (repaired after [s3] repair_grace_ms)')
    .action(async () => {
      const g = program.opts<GlobalOpts>()
      const r = await (await client(g)).request<{ objects: number, repaired: number, belowTarget: Array<{ bucket: string, key: string, live: number, target: number }> }>('GET', '/v1/s3/status')
      if (g.json === true) { out(JSON.stringify(r)); return }
      out(`${r.objects} objects, ${r.belowTarget.length} below their copies`)
      for (const o of r.belowTarget) out(`${o.bucket}/${o.key}\t${o.live}/${o.target} copies`)
    })
  const s3 = program.command('s3').description('the S3 endpoint of this agent (aws, rclone, s3cmd)')
  const key = s3.command('key').description('access keys for the S3 endpoint, shared by every agent')
  key.command('create').option('--bucket <bucket>', 'the key may use this bucket only').option('--read-only', 'the key may only read')
    .description('print a new access key and its secret (shown once)')
    .action(async (o: { bucket?: string, readOnly?: boolean }) => {
      const g = program.opts<GlobalOpts>()
      if (o.bucket !== undefined && !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(o.bucket)) throw new UserError(`--bucket ${o.bucket}: a bucket name is 3-63 of a-z 0-9 . -`, 2)
      const r = await (await client(g)).request<CreatedKey>('POST', '/v1/s3/keys', { ...(o.bucket !== undefined ? { bucket: o.bucket } : {}), readOnly: o.readOnly === true })
      if (g.json === true) { out(JSON.stringify(r)); return }
      out(`access key  ${r.accessKey}`)
      out(`secret key  ${r.secretKey}`)
      out(`endpoint    ${r.endpoint ?? '(the S3 endpoint is not running on this agent: see [s3] in the config)'}`)
      if (r.bucket !== null || r.readOnly) out(`limits      ${[r.bucket !== null ? `bucket ${r.bucket} only` : '', r.readOnly ? 'read-only' : ''].filter(Boolean).join(', ')}`)
    })
  key.command('list').description('the access keys (never their secrets)')
    .action(async () => {
      const g = program.opts<GlobalOpts>()
      const rows = await (await client(g)).request<KeyRow[]>('GET', '/v1/s3/keys')
      if (g.json === true) { out(JSON.stringify(rows)); return }
      out('ACCESS KEY\tBUCKET\tMODE\tCREATED')
      for (const k of rows) out(`${k.accessKey}\t${k.bucket ?? '*'}\t${k.readOnly ? 'read-only' : 'read-write'}\t${k.created}`)
    })
  key.command('delete').argument('<access-key>').description('revoke an access key on every agent')
    .action(async (accessKey: string) => {
      const g = program.opts<GlobalOpts>()
      const { AgentRequestError } = await import('../api/client.js')
      try {
        const r = await (await client(g)).request('DELETE', `/v1/s3/keys/${encodeURIComponent(accessKey)}`)
        if (g.json === true) out(JSON.stringify(r))
      } catch (err) {
        if (err instanceof AgentRequestError && err.status === 404) throw new UserError(`no S3 access key ${accessKey} (see bolt-agent s3 key list)`)
        throw err
      }
    })
}
