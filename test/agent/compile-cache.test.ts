import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Cluster } from '../../scenarios/harness.js'
import { compileCacheDir } from '../../agent/compile-cache.js'

const run = promisify(execFile)
const LAUNCHER = fileURLToPath(new URL('../../../bin/bolt-agent.js', import.meta.url))

/** Files under `dir`, recursively; 0 when it does not exist. */
async function filesUnder (dir: string): Promise<number> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])
  return entries.filter(e => e.isFile()).length
}

/** The environment of a child with `home` as its home and nothing else naming a cache directory. */
function envWithHome (home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, ...extra }
  for (const k of ['NODE_COMPILE_CACHE', 'XDG_CACHE_HOME', 'NODE_DISABLE_COMPILE_CACHE']) if (extra[k] === undefined) delete env[k]
  return env
}

t.test('the cache directory: NODE_COMPILE_CACHE, else under XDG_CACHE_HOME, else under ~/.cache', async t => {
  t.equal(compileCacheDir({ NODE_COMPILE_CACHE: '/x/ncc', XDG_CACHE_HOME: '/y' }), '/x/ncc')
  t.equal(compileCacheDir({ XDG_CACHE_HOME: '/y' }), '/y/bolt-agent/compile-cache')
  t.equal(compileCacheDir({ XDG_CACHE_HOME: '' }), join(homedir(), '.cache', 'bolt-agent', 'compile-cache'))
})

t.test('the launcher keeps compiled code in ~/.cache/bolt-agent/compile-cache; NODE_DISABLE_COMPILE_CACHE=1 turns it off', async t => {
  const on = await mkdtemp(join(tmpdir(), 'bolt-ccache-'))
  const off = await mkdtemp(join(tmpdir(), 'bolt-ccache-off-'))
  t.teardown(async () => { await rm(on, { recursive: true, force: true }); await rm(off, { recursive: true, force: true }) })
  const a = await run(process.execPath, [LAUNCHER, '--version'], { env: envWithHome(on), timeout: 60_000 })
  t.equal(a.stdout.trim(), '0.1.0')
  t.ok(await filesUnder(join(on, '.cache', 'bolt-agent', 'compile-cache')) > 0, 'cache entries written')
  const b = await run(process.execPath, [LAUNCHER, '--version'], { env: envWithHome(off, { NODE_DISABLE_COMPILE_CACHE: '1' }), timeout: 60_000 })
  t.equal(b.stdout.trim(), '0.1.0')
  t.equal(await filesUnder(off), 0, 'nothing written when disabled')
})

t.test('a home where no directory can be made leaves the cache off and the command working', async t => {
  // mkdir answers ENOENT inside /proc, which sent Node's recursive mkdir into an endless loop.
  for (const home of ['/proc', '/dev/null']) {
    const r = await run(process.execPath, [LAUNCHER, '--version'], { env: envWithHome(home), timeout: 20_000 })
    t.equal(r.stdout.trim(), '0.1.0', `HOME=${home}`)
  }
})

t.test('an agent writes its compiled modules once it is ready, so kill -9 leaves them for the next start', async t => {
  const home = await mkdtemp(join(tmpdir(), 'bolt-ccache-agent-'))
  const cluster = await Cluster.create()
  t.teardown(async () => { await cluster.destroy(); await rm(home, { recursive: true, force: true }) })
  const agent = await cluster.add('a')
  // The harness runs dist/agent/cli.js straight (no launcher) with the test's
  // environment, read when the process is spawned: point its home here for that moment.
  const saved = { ...process.env }
  const env = envWithHome(home)
  for (const k of Object.keys(process.env)) if (!(k in env)) delete process.env[k]
  Object.assign(process.env, env)
  const ready = agent.start(['init'])
  for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k]
  Object.assign(process.env, saved)
  await ready
  await agent.kill9()
  // Node writes the cache at exit; kill -9 skips that, so these are the ones written at ready.
  // The agent's module graph (libp2p and its dependencies) is hundreds of files.
  const n = await filesUnder(join(home, '.cache', 'bolt-agent', 'compile-cache'))
  t.ok(n >= 100, `${n} cache entries after kill -9`)
})
