import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { createHash } from 'node:crypto'
import { detectCgroups } from '../../native/cgroups.js'
import { fileURLToPath } from 'node:url'
import { createRuntime, detectRuntimes, type RuntimeName } from '../../native/index.js'
import { collect } from './compliance.js'
import { killRuntimeCapsules } from '../helpers/harness.js'

const here = dirname(fileURLToPath(import.meta.url))
const installed = (await detectRuntimes()).map(r => r.name)

async function startChild (dataDir: string, runtime: RuntimeName): Promise<ReturnType<typeof spawn>> {
  const child = spawn(process.execPath, [join(here, 'agent-child.js'), dataDir, runtime], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout?.setEncoding('utf8')
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('agent child did not get ready')) }, 30_000)
    child.stdout?.on('data', (s: string) => { out += s; if (out.includes('ready')) { clearTimeout(timer); resolve() } })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`agent child exited ${code ?? '?'}`)) })
  })
  return child
}

for (const runtime of ['runc', 'crun'] as const) {
  t.test(`agent kill -9 while capsules run: adopted or cleaned on restart (${runtime})`, { skip: process.getuid?.() !== 0 ? 'needs root' : !installed.includes(runtime) ? `${runtime} is not installed` : false }, async t => {
    const dataDir = await mkdtemp(join(tmpdir(), `bolt-native-recover-${runtime}-`))
    // A test that fails half-way leaves the child's capsules running: kill them before the dir goes.
    t.teardown(async () => { await killRuntimeCapsules(dataDir); await rm(dataDir, { recursive: true, force: true }) })
    const child = await startChild(dataDir, runtime)
    child.kill('SIGKILL')
    await once(child, 'exit')
    // "short" finishes while no agent runs: wait for its waiter to record the exit.
    for (let i = 0; i < 400 && !existsSync(join(dataDir, 'capsules', 'short', 'exit')); i++) await new Promise(resolve => setTimeout(resolve, 50))

    const rt = await createRuntime({ dataDir, runtime })
    t.teardown(async () => { await rt.close() })
    const states = Object.fromEntries((await rt.list()).map(s => [s.name, s]))
    t.equal(states.long?.status, 'running', 'the running capsule was adopted')
    t.equal(states.short?.status, 'exited', 'the finished capsule was recorded')
    t.match(states.short?.exit, { exitCode: 4, reason: 'exited' })
    t.ok((await collect(rt.logs('short'))).some(l => l.line === 'bye'), 'output written while the agent was down is in the log')

    // Logging carries on after adoption: new ticks arrive.
    const before = (await collect(rt.logs('long'))).length
    let seen = 0
    for await (const r of rt.logs('long', { follow: true, signal: AbortSignal.timeout(10_000) })) {
      if (r.line.startsWith('tick') && ++seen > before + 3) break
    }
    t.ok(seen > before + 3, 'the adopted capsule keeps logging')
    t.ok((await rt.exec('long', ['true'])).exitCode === 0, 'exec works on the adopted capsule')

    t.match(await rt.stop('long', { timeoutMs: 200 }), { reason: 'stopped', exitCode: 137 })
    await rt.remove('long')
    await rt.remove('short')
    t.same(await rt.list(), [])
    const mounts = await readFile('/proc/self/mountinfo', 'utf8')
    t.notOk(mounts.includes(dataDir), 'no mount left under the data dir')
    const stateRoot = join(dataDir, `${runtime}-state`)
    t.notOk(existsSync(join(stateRoot, 'long')), 'no runtime state left')
    const prefix = `/bolt/${createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 12)}`
    const layout = await detectCgroups()
    const left = [...Object.values(layout.v1), layout.unified ?? ''].filter(mp => mp !== '' && existsSync(join(mp, prefix)))
    t.same(left, [], 'no cgroup left in any hierarchy')
  })
}

t.test('recover removes runtime containers no capsule record claims', { skip: process.getuid?.() !== 0 || !installed.includes('runc') ? 'needs root and runc' : false }, async t => {
  const dataDir = await mkdtemp(join(tmpdir(), 'bolt-native-orphan-'))
  t.teardown(async () => { await killRuntimeCapsules(dataDir); await rm(dataDir, { recursive: true, force: true }) })
  const child = await startChild(dataDir, 'runc')
  child.kill('SIGKILL')
  await once(child, 'exit')
  // Lose the record of "long" as if the crash had hit while writing it.
  await rm(join(dataDir, 'capsules', 'long', 'state.json'))
  const rt = await createRuntime({ dataDir, runtime: 'runc', recover: false })
  t.teardown(async () => { await rt.close() })
  const report = await rt.recover()
  t.ok(report.orphansRemoved.includes('long'), 'the unclaimed container was removed')
  t.notOk((await rt.list()).some(s => s.name === 'long'))
  const mounts = await readFile('/proc/self/mountinfo', 'utf8')
  t.notOk(mounts.includes(join(dataDir, 'capsules', 'long')), 'its rootfs is unmounted')
  await rt.wait('short')
  await rt.remove('short', { force: true })
})
