// Client commands added by later parts (kv, capsules, content). Each talks to
// the agent API and prints plain text, or JSON with --json.
import type { Command } from 'commander'
import type { PutResult } from '../p2p/content/objects.js'
import { AgentRequestError, type ApiResponse } from './api/client.js'
import { UserError } from './errors.js'
import { client, collect, formatBytes, out, type GlobalOpts } from './cli-common.js'
import { registerInspectExec, registerServiceCommands } from './services/cli.js'
import { formatPort } from './ports.js'
import { registerDay2Commands } from './day2/cli.js'
import { registerRunCommand } from './cli-run.js'

export function registerClientCommands (program: Command): void {
  registerCapsuleCommands(program)
  registerStackCommands(program)
  registerServiceCommands(program)
  registerInspectExec(program)
  registerDay2Commands(program)
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
  kv.command('delete').argument('<key>').description('remove KEY (exit 1 if the key is absent)')
    .action(async (key: string) => {
      const g = program.opts<GlobalOpts>()
      try {
        const r = await (await client(g)).request('DELETE', `/v1/kv/${encodeURIComponent(key)}`)
        if (g.json === true) out(JSON.stringify(r))
      } catch (err) {
        if (err instanceof AgentRequestError && err.status === 404) throw new UserError(`no such key: ${key}`)
        throw err
      }
    })
  kv.command('list').option('--prefix <p>', 'only keys that start with P').description('the keys, sorted, one a line (JSON: an array of keys)')
    .action(async (o: { prefix?: string }) => {
      const g = program.opts<GlobalOpts>()
      const keys = await (await client(g)).request<string[]>('GET', `/v1/kv${o.prefix !== undefined ? `?prefix=${encodeURIComponent(o.prefix)}` : ''}`)
      if (g.json === true) out(JSON.stringify(keys))
      else for (const k of keys) out(k)
    })
  kv.command('cas').argument('<key>').argument('<old>').argument('<new>').description('set KEY to NEW only if it is OLD (exit 1 when it is not)')
    .action(async (key: string, old: string, next: string) => {
      const g = program.opts<GlobalOpts>()
      const r = await (await client(g)).request<{ swapped: boolean, current?: string | null }>('POST', `/v1/kv/${encodeURIComponent(key)}/cas`, { old, new: next })
      if (g.json === true) out(JSON.stringify(r))
      if (!r.swapped) throw new UserError(`cas failed: ${key} is ${r.current === null || r.current === undefined ? 'absent' : JSON.stringify(r.current)}, not ${JSON.stringify(old)}`)
    })
}

// ---- capsules, images, gpu ------------------------------------------------

interface PsRow { name: string, capsule: string, image: string, node: string | null, nodeName?: string | null, address?: string | null, ports?: Array<{ host: number, container: number, proto: string }>, state: string, reason: string | null, exitCode: number | null, restarts: number, health: string | null }

const PS_STATES = ['pending', 'pulling', 'running', 'exited', 'failed', 'lost']

/** `--filter k=v` of ps, checked: an unknown key or state is bad usage. */
function psFilters (list: string[] | undefined): { node: string[], state: string[] } {
  const f: { node: string[], state: string[] } = { node: [], state: [] }
  for (const p of list ?? []) {
    const i = p.indexOf('=')
    const k = p.slice(0, i)
    const v = p.slice(i + 1)
    if (i <= 0 || v === '' || (k !== 'node' && k !== 'state')) throw new UserError(`--filter ${p}: expected node=NAME or state=STATE`, 2)
    if (k === 'state' && !PS_STATES.includes(v)) throw new UserError(`--filter ${p}: state is one of ${PS_STATES.join(', ')}`, 2)
    f[k].push(v)
  }
  return f
}

export function registerCapsuleCommands (program: Command): void {
  registerRunCommand(program)

  program.command('ps').description('capsules: name, image, node, state, reason, exit code, restarts')
    .option('--filter <k=v>', 'only rows with node=NAME|ID or state=STATE; repeatable (one key: any value; several keys: all)', collect)
    .action(async (o: { filter?: string[] }) => {
      const g = program.opts<GlobalOpts>()
      const filters = psFilters(o.filter)
      const c = await client(g)
      let rows = await c.request<PsRow[]>('GET', '/v1/capsules')
      if (filters.state.length > 0) rows = rows.filter(r => filters.state.includes(r.state))
      if (filters.node.length > 0) {
        // A node is named by its name, its id, or the id's tail that ps prints.
        const members = (await c.request<{ members: Array<{ id: string, name: string }> }>('GET', '/v1/status')).members
        const ids = new Set(members.filter(m => filters.node.some(f => f === m.name || f === m.id || (f.length >= 8 && m.id.endsWith(f)))).map(m => m.id))
        rows = rows.filter(r => r.node !== null && ids.has(r.node))
      }
      if (g.json === true) { out(JSON.stringify(rows)); return }
      const portsOf = (r: PsRow): string => (r.ports ?? []).map(p => formatPort(r.address ?? null, p)).join(',') || '-'
      const table = [['NAME', 'IMAGE', 'NODE', 'STATE', 'HEALTH', 'PORTS', 'EXIT', 'RESTARTS', 'REASON'], ...rows.map(r => [r.name, r.image, r.node === null ? '-' : (r.nodeName ?? r.node.slice(-12)), r.state, r.health ?? '-', portsOf(r), r.exitCode === null ? '-' : String(r.exitCode), String(r.restarts), r.reason ?? ''])]
      const widths = table[0]!.map((_, i) => Math.max(...table.map(r => (r[i] ?? '').length)))
      for (const r of table) out(r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)).join('  '))
    })

  program.command('logs').description('a capsule\'s output (every replica, each line prefixed), from whichever nodes run it')
    .argument('<name>', 'a capsule (all its instances) or one instance, e.g. web-1')
    .option('-f, --follow', 'keep printing new output')
    .option('--tail <n>', 'only the last N lines of each instance (then new ones with -f); "all" for everything')
    .option('--since <when>', 'only lines since a duration ago (10s, 5m, 1h30m, 2d) or a time (2026-12-06T19:00:00Z)')
    .option('-t, --timestamps', 'prefix each line with the time it was written (RFC 3339)')
    .option('--previous', 'the output of the run before the last restart (or placement) on the same node')
    .action(async (name: string, o: { follow?: boolean, tail?: string, since?: string, timestamps?: boolean, previous?: boolean }) => {
      const g = program.opts<GlobalOpts>()
      const { MAX_TAIL } = await import('./logs-query.js')
      const q = new URLSearchParams()
      if (o.previous === true && o.follow === true) throw new UserError('logs --previous: a finished run has nothing to follow (drop -f)', 2)
      if (o.previous === true) q.set('previous', '1')
      if (o.follow === true) q.set('follow', '1')
      if (o.tail !== undefined && o.tail !== 'all') {
        const n = Number(o.tail)
        if (!/^\d+$/.test(o.tail) || n > MAX_TAIL) throw new UserError(`--tail ${o.tail}: expected a whole number up to ${MAX_TAIL}, or all`, 2)
        q.set('tail', String(n))
      }
      if (o.since !== undefined) q.set('since', String(parseSince(o.since, Date.now())))
      const res = await (await client(g)).raw('GET', `/v1/logs/${encodeURIComponent(name)}${q.size > 0 ? `?${q.toString()}` : ''}`)
      if (!res.ok) {
        const body = await res.json().catch(() => ({})) as { error?: string }
        throw new UserError(body.error ?? `HTTP ${res.status}`)
      }
      for await (const line of ndjsonLines(res)) {
        const rec = JSON.parse(line) as { stream?: string, line?: string, error?: string, time?: number, instance?: string }
        if (rec.error !== undefined) throw new UserError(`logs: ${rec.error}`)
        if (g.json === true) { out(line); continue }
        // Replicas are told apart by a prefix, as docker compose logs does; one instance asked by name needs none.
        const prefix = rec.instance !== undefined && rec.instance !== name ? `${rec.instance} | ` : ''
        const stamp = o.timestamps === true && rec.time !== undefined ? `${new Date(rec.time).toISOString()} ` : ''
        const text = prefix + stamp + (rec.line ?? '')
        if (rec.stream === 'stderr') process.stderr.write(text + '\n')
        else out(text)
      }
    })

  for (const [cmd, method, path, desc, word] of [
    ['stop', 'POST', (n: string) => `/v1/capsules/${encodeURIComponent(n)}/stop`, 'stop a capsule (SIGTERM, then SIGKILL after a timeout)', 'stopping'],
    ['rm', 'DELETE', (n: string) => `/v1/capsules/${encodeURIComponent(n)}`, 'remove a capsule; its node stops and cleans it up', 'removed']
  ] as const) {
    program.command(cmd).description(desc).argument('<name>')
      .action(async (name: string) => {
        const g = program.opts<GlobalOpts>()
        try {
          const r = await (await client(g)).request(method, path(name))
          out(g.json === true ? JSON.stringify(r) : `${name} ${word}`)
        } catch (err) {
          if (err instanceof AgentRequestError && err.status === 404) throw new UserError(`no capsule named ${name}`)
          throw err
        }
      })
  }

  program.command('pull').description('pull an image to this node, peers first, registry for the rest')
    .argument('<image>')
    .action(async (image: string) => {
      const g = program.opts<GlobalOpts>()
      const res = await (await client(g)).raw('POST', '/v1/images/pull', { ref: image })
      if (!res.ok) throw new UserError(((await res.json().catch(() => ({}))) as { error?: string }).error ?? `HTTP ${res.status}`)
      const tty = process.stdout.isTTY === true && g.json !== true
      const { SingleBar, Presets } = await import('cli-progress')
      const bar = tty ? new SingleBar({ format: 'pull {bar} {percentage}% | {done} of {size} | from peers {peers}, registry {registry}', hideCursor: true }, Presets.shades_classic) : undefined
      const payload = (ev: { totalBytes?: number, doneBytes?: number, bytesFromPeers?: number, bytesFromRegistry?: number }): Record<string, string> =>
        ({ done: formatBytes(ev.doneBytes ?? 0), size: formatBytes(ev.totalBytes ?? 0), peers: formatBytes(ev.bytesFromPeers ?? 0), registry: formatBytes(ev.bytesFromRegistry ?? 0) })
      let started = false
      let failure: string | undefined
      for await (const line of ndjsonLines(res)) {
        const ev = JSON.parse(line) as { event: string, totalBytes?: number, doneBytes?: number, bytesFromPeers?: number, bytesFromRegistry?: number, error?: string, digest?: string, ref?: string }
        if (g.json === true) out(line)
        if (ev.event === 'progress' && bar !== undefined) {
          if (!started && (ev.totalBytes ?? 0) > 0) { bar.start(ev.totalBytes ?? 0, 0, payload(ev)); started = true }
          if (started) bar.update(ev.doneBytes ?? 0, payload(ev))
        }
        if (ev.event === 'error') failure = ev.error
        if (ev.event === 'done' && g.json !== true) {
          bar?.stop()
          out(`${ev.ref ?? image} ${ev.digest ?? ''} (from peers ${formatBytes(ev.bytesFromPeers ?? 0)}, from registry ${formatBytes(ev.bytesFromRegistry ?? 0)})`)
        }
      }
      bar?.stop()
      if (failure !== undefined) throw new UserError(`pull failed: ${failure}`)
    })

  program.command('images').description('images pulled to this node')
    .option('--cluster', 'the cluster\'s own images (pushed to any agent\'s registry endpoint), with sizes and replica counts')
    .action(async (o: { cluster?: boolean }) => {
      const g = program.opts<GlobalOpts>()
      if (o.cluster === true) { await (await import('./registry/cli.js')).printClusterImages(g, formatBytes); return }
      const rows = await (await client(g)).request<Array<{ ref: string, digest: string, size: number, pulledAt: string }>>('GET', '/v1/images')
      if (g.json === true) { out(JSON.stringify(rows)); return }
      out('REF\tDIGEST\tSIZE')
      for (const r of rows) out(`${r.ref}\t${r.digest.slice(0, 19)}\t${formatBytes(r.size)}`)
    })

  const object = program.command('object').description('content-addressed objects, chunked and replicated across peers')
  object.command('put').argument('<file>').option('--replicas <k>', 'peers to push the chunks to', '2')
    .description('store FILE in the cluster; prints its id')
    .action(async (file: string, o: { replicas: string }) => {
      const g = program.opts<GlobalOpts>()
      const k = Number(o.replicas)
      if (!Number.isInteger(k) || k < 0) throw new UserError(`--replicas ${o.replicas}: expected a whole number`, 2)
      const { resolve } = await import('node:path')
      const r = await (await client(g)).request<PutResult>('POST', '/v1/objects', { path: resolve(file), replicas: k })
      out(g.json === true ? JSON.stringify(r) : r.id)
      if (r.replicas.length < k) {
        // Stored all the same (here and on the peers that took it): a warning, not a failure.
        const refused = r.replicaErrors
        const why = refused.length > 0 ? `${refused.length} peer(s) failed, first: ${refused[0]?.error ?? ''}` : 'no other member could take one'
        process.stderr.write(`bolt-agent: warning: ${r.id} has ${r.replicas.length} of the ${k} peer copies asked (${why}); add members or lower --replicas\n`)
      }
    })
  object.command('get').argument('<id>').argument('<dest>').description('fetch an object from peers into DEST, verified; DEST is written by this command, as you')
    .action(async (id: string, dest: string) => {
      const g = program.opts<GlobalOpts>()
      const { downloadObject } = await import('./object-download.js')
      const { dest: written, ...r } = await downloadObject(await client(g), id, dest)
      out(g.json === true ? JSON.stringify(r) : `${id} -> ${written}`)
    })

  program.command('gpu').description('the GPUs this node sees and its CDI spec')
    .action(async () => {
      const g = program.opts<GlobalOpts>()
      const r = await (await client(g)).request<{ gpus: Array<{ vendor: string, model: string, memoryBytes: number | null, index: number }>, cdi: { specs: Array<{ path: string, devices: string[] }> } }>('GET', '/v1/gpu')
      if (g.json === true) { out(JSON.stringify(r)); return }
      if (r.gpus.length === 0) out('no GPUs found on this node')
      for (const x of r.gpus) out(`${x.index}\t${x.vendor}\t${x.model}\t${x.memoryBytes ?? '?'} bytes`)
      for (const s of r.cdi.specs) out(`CDI ${s.path}: ${s.devices.join(', ')}`)
    })
}

export function registerStackCommands (program: Command): void {
  program.command('up').description('apply a stack: create new capsules in depends_on order, replace changed ones one instance at a time waiting for health, remove dropped ones')
    .requiredOption('-f, --file <stack.toml>', 'the stack file')
    .option('--dry-run', 'print the plan (added, changed, removed) and change nothing')
    .option('-d, --detach', 'submit the changes and return (the agents carry out rollouts; run up again to follow)')
    .action(async (o: { file: string, dryRun?: boolean, detach?: boolean }) => {
      const g = program.opts<GlobalOpts>()
      const { runUp } = await import('./day2/stack-up.js')
      await runUp(g, async () => await client(g), o)
    })
  program.command('down').description('remove a stack\'s capsules, dependents first')
    .requiredOption('-f, --file <stack.toml>', 'the stack file')
    .action(async (o: { file: string }) => {
      const g = program.opts<GlobalOpts>()
      const { readFile } = await import('node:fs/promises')
      const { parseStack, startOrder } = await import('./stack.js')
      let order: string[]
      try {
        order = startOrder(parseStack(await readFile(o.file, 'utf8'), o.file)).reverse()
      } catch (err) {
        throw new UserError(`down: ${(err as Error).message}`, 2)
      }
      const c = await client(g)
      for (const name of order) {
        // Only what was there is named: a capsule already gone is no news.
        const removed = await c.request('DELETE', `/v1/capsules/${encodeURIComponent(name)}`).then(() => true, (err: unknown) => {
          if (!(err instanceof AgentRequestError && err.status === 404)) throw err
          return false
        })
        if (removed) out(g.json === true ? JSON.stringify({ capsule: name, removed: true }) : `${name} removed`)
      }
    })
}

/**
 * `--since`: a duration before `now` (90s, 5m, 1h30m, 2d, 500ms) or an
 * absolute time Date.parse understands (RFC 3339 above all). Milliseconds
 * since the epoch; a usage error otherwise.
 */
export function parseSince (text: string, now: number): number {
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
  if (/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(text)) {
    let ms = 0
    for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) ms += Number(m[1]) * (unit[m[2] as string] as number)
    return now - ms
  }
  const t = Date.parse(text)
  if (/^\d{4}-\d{2}-\d{2}/.test(text) && Number.isFinite(t)) return t
  throw new UserError(`--since ${text}: expected a duration (10s, 5m, 1h30m, 2d) or a time (2026-12-06T19:00:00Z)`, 2)
}

/** The lines of a streamed NDJSON response, without the empty ones. */
async function * ndjsonLines (res: ApiResponse): AsyncIterable<string> {
  let buf = ''
  const decoder = new TextDecoder()
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true })
    let nl
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      if (line !== '') yield line
    }
  }
  if (buf.trim() !== '') yield buf
}
