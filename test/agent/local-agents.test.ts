// Client commands find the agent of this machine without --data (`dev`
// lives in a temp dir), say which to pick when there are several, and the
// join banner names the role autopilot gave the node. Real agents.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtemp, mkdir, readdir, rm, stat, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { CLI, Cluster, killCapsules, runCli, waitFor } from '../helpers/harness.js'
import { RAFT_TOML } from '../../scenarios/_raft.js'
import { listLocalAgents, RuntimeDirError } from '../../agent/local-agents.js'

t.test('a runtime dir that others may write is refused', async t => {
  const dir = join(await mkdtemp(join(tmpdir(), 'bolt-rt-')), 'bolt-agent')
  t.teardown(async () => { await rm(join(dir, '..'), { recursive: true, force: true }) })
  t.same(await listLocalAgents(dir), [], 'no dir: no agents')
  await mkdir(dir)
  await chmod(dir, 0o777)
  await t.rejects(listLocalAgents(dir), { name: RuntimeDirError.name }, 'a world-writable dir could list an attacker\'s data dir')
})

t.test('client commands find the one local agent; several are listed; the join banner names the real role', async t => {
  const root = await mkdtemp(join(tmpdir(), 'bolt-local-'))
  const saved = { XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR, XDG_DATA_HOME: process.env.XDG_DATA_HOME, BOLT_DATA: process.env.BOLT_DATA }
  // Our own runtime and default data dirs, so parallel tests' agents are not ours to find.
  process.env.XDG_RUNTIME_DIR = join(root, 'run')
  process.env.XDG_DATA_HOME = join(root, 'share')
  delete process.env.BOLT_DATA
  await mkdir(process.env.XDG_RUNTIME_DIR, { mode: 0o700 })
  const rtDir = join(process.env.XDG_RUNTIME_DIR, 'bolt-agent')
  t.teardown(async () => {
    for (const [k, v] of Object.entries(saved)) { if (v === undefined) delete process.env[k]; else process.env[k] = v }
    await rm(root, { recursive: true, force: true })
  })

  const dev = spawn(process.execPath, [CLI, 'dev'], { env: { ...process.env, BOLT_LOG_JSON: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
  const devExited = new Promise<number | null>(resolve => dev.on('exit', code => resolve(code)))
  const devLines: string[] = []
  const devData = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`dev not ready: ${devLines.join(' | ')}`)) }, 90_000)
    createInterface({ input: dev.stdout }).on('line', l => {
      devLines.push(l)
      const m = /^data dir: (\S+)/.exec(l)
      if (m !== null) { clearTimeout(timer); resolve(m[1] as string) }
    })
  })
  t.teardown(async () => {
    dev.kill('SIGKILL')
    await killCapsules(devData)
    await rm(devData, { recursive: true, force: true })
  })

  const found = await runCli(['status', '--json'], { timeoutMs: 20_000 })
  t.equal(found.code, 0, `status without --data finds dev's agent (${found.stderr.trim()})`)
  t.equal((JSON.parse(found.stdout || '{}') as { members?: unknown[] }).members?.length, 1, 'and talks to it')
  const st = await stat(rtDir)
  t.equal(st.mode & 0o777, 0o700, 'the runtime dir is 0700')
  t.equal((await readdir(rtDir)).length, 1, 'one entry in it')

  const cluster = await Cluster.create(RAFT_TOML(3))
  t.teardown(async () => { await cluster.destroy() })
  const a0 = await cluster.add('a0')
  await a0.start(['init'])
  const several = await runCli(['ps'], { timeoutMs: 20_000 })
  t.equal(several.code, 1, 'two agents: exit 1')
  t.match(several.stderr, /2 agents run on this machine/, `says so (${several.stderr.trim().split('\n')[0] ?? ''})`)
  t.ok(several.stderr.includes(devData) && several.stderr.includes(a0.dataDir), 'and lists both data dirs')

  // A joiner with --role auto is a learner when ready; autopilot makes it a voter (raft.voters = 3).
  const b = await cluster.add('b')
  const seed = a0.ready!.node.addrs.find(x => x.includes('/quic-v1'))!
  const join1 = spawn(process.execPath, [CLI, '--data', b.dataDir, '--config', b.configFile, 'join', seed, '--token', a0.ready!.token], { env: { ...process.env, BOLT_LOG_JSON: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
  const joinExited = new Promise<number | null>(resolve => join1.on('exit', code => resolve(code)))
  t.teardown(async () => { join1.kill('SIGKILL'); await joinExited; await killCapsules(b.dataDir) })
  const banner = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('no join banner')) }, 90_000)
    createInterface({ input: join1.stdout }).on('line', l => { if (l.startsWith('bolt-agent joined')) { clearTimeout(timer); resolve(l) } })
  })
  t.match(banner, /, server\)$/, `the banner names the role b got (${banner})`)
  let bStatus = { code: -1, stdout: '', stderr: '' }
  const server = await waitFor(async () => {
    bStatus = await runCli(['--data', b.dataDir, 'status', '--json'], { timeoutMs: 20_000 })
    return bStatus.code === 0 && (JSON.parse(bStatus.stdout) as { node?: { role?: string } }).node?.role === 'server'
  }, 30_000, 500)
  t.ok(server >= 0, `and b's status says server (${bStatus.code} ${bStatus.stdout.slice(0, 200)} ${bStatus.stderr.trim().slice(0, 200)})`)
  join1.kill('SIGTERM')
  t.equal(await joinExited, 0, 'b stops cleanly')

  await a0.stop()
  const one = await waitFor(async () => (await readdir(rtDir)).length === 1, 20_000, 200)
  t.ok(one >= 0, 'a stopped agent removes its entry')
  dev.kill('SIGINT')
  t.equal(await devExited, 0, 'dev stops cleanly')
  t.same(await readdir(rtDir), [], 'and removes its entry too')
})
