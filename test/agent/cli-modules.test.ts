// Client commands start fast because they load only the HTTP client and their
// own formatting (issue 25): run each against a real agent with a hook that
// records every module the process resolves, and check the list. Users run
// the bundle (scripts/build-bundle.mjs): there the recorder sees chunks, and
// esbuild's metafile says which modules each chunk holds.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { BUNDLE_CLI, CLI, Cluster, TREE_CLI } from '../helpers/harness.js'

const here = dirname(fileURLToPath(import.meta.url))
const RECORDER = join(here, '..', 'helpers', 'record-modules.js')
const ROOT = join(here, '..', '..', '..')

/** esbuild's metafile, as scripts/build-bundle.mjs writes it: paths relative to the checkout. */
interface BundleMeta { outputs: Record<string, { inputs: Record<string, unknown> }> }

/**
 * A recorded list with each loaded chunk of the bundle replaced by the
 * modules it holds (as file URLs, like the tree's), so the same checks apply.
 */
function unbundle (modules: string[], meta: BundleMeta): string[] {
  const base = `file://${ROOT}/`
  return modules.flatMap(m => {
    const chunk = m.startsWith(base) ? meta.outputs[m.slice(base.length)] : undefined
    return chunk === undefined ? [m] : [m, ...Object.keys(chunk.inputs).map(i => base + i)]
  })
}

/** What a client command must not load: the agent, libp2p, the runtime, and libraries only agents need. */
const FORBIDDEN: Array<[string, RegExp]> = [
  ['libp2p', /\/node_modules\/(libp2p|@libp2p\/[^/]+|@chainsafe\/[^/]+)\//],
  ['the agent (agent.js)', /\/dist\/agent\/agent\.js$/],
  ['the runtime (native/)', /\/dist\/native\//],
  ['consensus', /\/dist\/consensus\//],
  ['pino', /\/node_modules\/pino\//],
  ['smol-toml', /\/node_modules\/smol-toml\//],
  ['zod', /\/node_modules\/zod\//],
  ['level', /\/node_modules\/(level|classic-level)\//],
  // Node's fetch (and an ESM import of node:http, through its lazy WebSocket getters) load these: ~20 ms of CPU.
  ['undici, http2 or zlib (Node internals)', /^node-internal:(internal\/deps\/undici\/|http2$|zlib$)/]
]

async function recordCli (cli: string, args: string[], file: string): Promise<{ code: number | null, stdout: string, stderr: string, modules: string[] }> {
  const p = spawn(process.execPath, ['--import', RECORDER, cli, ...args], { env: { ...process.env, BOLT_RECORD_MODULES: file }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  p.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  p.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const timer = setTimeout(() => { p.kill('SIGKILL') }, 60_000)
  const code = await new Promise<number | null>(resolve => p.on('close', c => { clearTimeout(timer); resolve(c) }))
  const modules = (await readFile(file, 'utf8')).split('\n').filter(l => l !== '')
  return { code, stdout, stderr, modules }
}

t.test('client commands against a running agent load neither libp2p nor the agent', async t => {
  const cluster = await Cluster.create()
  t.teardown(async () => { await cluster.destroy() })
  const a = await cluster.add('a0')
  await a.start(['init'], 120_000)
  const put = await a.cli(['kv', 'put', 'greeting', 'hello'])
  t.equal(put.code, 0, `kv put works (${put.stderr})`)
  const work = await mkdtemp(join(tmpdir(), 'bolt-cli-modules-'))
  t.teardown(async () => { await rm(work, { recursive: true, force: true }) })

  const cases = (kind: string): Array<{ args: string[], code: number, stdout?: RegExp }> => [
    { args: ['--version'], code: 0, stdout: /^0\.\d+\.\d+/ },
    { args: ['status', '--json'], code: 0, stdout: /"members":\[/ },
    { args: ['status'], code: 0, stdout: /^node\s+a0 / },
    { args: ['ps', '--json'], code: 0, stdout: /^\[/ },
    { args: ['kv', 'get', 'greeting'], code: 0, stdout: /^hello$/m },
    { args: ['token', '--json'], code: 0, stdout: /"join":"bolt-agent join / },
    // No such capsule: the command still runs its whole client path.
    { args: ['logs', 'no-such-capsule'], code: 1 },
    // run parses its flags without zod (the agent checks the spec) and waits for the placement in its submit.
    { args: ['run', '127.0.0.1:9/none/busybox:1', '--name', `modules-run-${kind}`, '--network', 'none', '--memory', '16M', '--cpu', '0.01', '--', 'true'], code: 0, stdout: new RegExp(`^modules-run-${kind}$`, 'm') }
  ]
  // The compiled tree, and the bundle users run (when this build made one).
  const clis: Array<[string, string, BundleMeta | undefined]> = [['tree', TREE_CLI, undefined]]
  if (CLI === BUNDLE_CLI) clis.push(['bundle', BUNDLE_CLI, JSON.parse(await readFile(join(dirname(BUNDLE_CLI), 'meta.json'), 'utf8')) as BundleMeta])
  else t.comment('no fresh bundle (dist/bundle): checked the compiled tree only')
  for (const [kind, cli, meta] of clis) for (const [i, c] of cases(kind).entries()) {
    const name = `${kind}: ${c.args.join(' ')}`
    const r = await recordCli(cli, ['--data', a.dataDir, ...c.args], join(work, `${kind}-${i}.txt`))
    if (meta !== undefined) {
      t.ok(r.modules.some(m => m.endsWith('/dist/bundle/cli.js')), `${name}: the bundle ran`)
      r.modules = unbundle(r.modules, meta)
    }
    t.equal(r.code, c.code, `${name}: exit ${c.code} (${r.stderr.trim().slice(0, 300)})`)
    if (c.stdout !== undefined) t.match(r.stdout, c.stdout, `${name}: answers`)
    // The recorder works: it saw the CLI itself, the HTTP client, commander (a CJS require) and, when a request was made, node:http.
    t.ok(r.modules.some(m => m.endsWith('/dist/agent/cli.js')) && r.modules.some(m => m.endsWith('/dist/agent/api/client.js')) && r.modules.some(m => /\/commander\/lib\/command\.js$/.test(m)) && (c.args[0] === '--version' || r.modules.includes('node-internal:http')),
      `${name}: the recorder saw the CLI's own modules (${r.modules.length} in all)`)
    for (const [what, re] of FORBIDDEN) {
      const hits = r.modules.filter(m => re.test(m))
      t.same(hits, [], `${name}: does not load ${what}`)
    }
  }
})

t.test('the recorder sees what an agent command loads', async t => {
  // The other side of the check above: the same hook on a process that does load libp2p and zod.
  const work = await mkdtemp(join(tmpdir(), 'bolt-cli-modules-'))
  t.teardown(async () => { await rm(work, { recursive: true, force: true }) })
  const file = join(work, 'rec.txt')
  const p = spawn(process.execPath, ['--import', RECORDER, '--input-type=module', '-e', "await import('libp2p'); await import('zod'); await fetch('data:,x')"], { cwd: join(here, '..', '..', '..'), env: { ...process.env, BOLT_RECORD_MODULES: file }, stdio: 'inherit' })
  const code = await new Promise<number | null>(resolve => p.on('close', resolve))
  t.equal(code, 0)
  const modules = (await readFile(file, 'utf8')).split('\n')
  t.ok(modules.some(m => FORBIDDEN[0]![1].test(m)), 'libp2p recorded')
  t.ok(modules.some(m => /\/node_modules\/zod\//.test(m)), 'zod recorded')
  t.ok(modules.some(m => FORBIDDEN.at(-1)![1].test(m)), 'undici (fetch) recorded')
})

t.test('the bundle check sees what the agent chunks hold', { skip: CLI === BUNDLE_CLI ? false : 'no fresh bundle (dist/bundle)' }, async t => {
  // The other side of the bundle's check: the chunk that holds the agent expands to libp2p and zod.
  const meta = JSON.parse(await readFile(join(dirname(BUNDLE_CLI), 'meta.json'), 'utf8')) as BundleMeta
  const agentChunk = Object.entries(meta.outputs).find(([, o]) => 'dist/agent/agent.js' in o.inputs)?.[0]
  t.ok(agentChunk !== undefined, 'a chunk holds dist/agent/agent.js')
  const modules = unbundle([`file://${ROOT}/${agentChunk ?? ''}`], meta)
  t.ok(modules.some(m => m.endsWith('/dist/agent/agent.js')), 'expanded to the agent')
  t.ok(modules.some(m => FORBIDDEN[0]![1].test(m)), 'and to libp2p')
})
