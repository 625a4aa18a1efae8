// `bolt-agent dev`, the README's first command: a one-node cluster in a temp
// dir that Ctrl-C stops and removes, as a real process.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { CLI, killCapsules, runCli, waitFor } from '../helpers/harness.js'

const mountsUnder = async (dir: string): Promise<string[]> =>
  (await readFile('/proc/mounts', 'utf8')).split('\n').map(l => l.split(' ')[1] ?? '').filter(m => m.startsWith(dir + '/'))

/**
 * Starts `bolt-agent dev` (through `cmd`), waits until it has printed its
 * data dir and what to try, and kills it and its capsules at teardown if the
 * test did not stop it.
 */
async function startDev (t: Test, cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ p: ChildProcess, exited: Promise<number | null>, stdout: string[], stderr: string[], dataDir: string }> {
  const p = spawn(cmd, args, { env: { ...env, BOLT_LOG_JSON: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<number | null>(resolve => p.on('exit', (code, sig) => resolve(code ?? (sig !== null ? 128 : null))))
  const stdout: string[] = []
  const stderr: string[] = []
  createInterface({ input: p.stderr! }).on('line', l => { stderr.push(l) })
  // The human output says how to stop it and how to join; the data dir is on its second line.
  const dataDir = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`dev not ready: ${stderr.slice(-3).join(' | ')}`)) }, 60_000)
    createInterface({ input: p.stdout! }).on('line', l => {
      stdout.push(l)
      // The last line of the human output: everything before it has arrived.
      if (!l.startsWith('Join other machines with')) return
      const m = /^data dir: (\S+)/m.exec(stdout.join('\n'))
      if (m !== null) { clearTimeout(timer); resolve(m[1] as string) }
    })
    p.on('exit', code => { clearTimeout(timer); reject(new Error(`dev exited with ${code}: ${stderr.slice(-3).join(' | ')}`)) })
  })
  t.teardown(async () => {
    p.kill('SIGKILL')
    // Only after a failed shutdown (runc would create its state dir anew).
    if (existsSync(dataDir)) {
      await killCapsules(dataDir)
      await rm(dataDir, { recursive: true, force: true })
    }
  })
  return { p, exited, stdout, stderr, dataDir }
}

t.test('dev starts a cluster of one with the demo capsule; status into a closed pipe exits quietly; a Ctrl-C delivered twice at once still shuts it down cleanly and removes its data dir', async t => {
  const { p, exited, stdout, dataDir } = await startDev(t, process.execPath, [CLI, 'dev'], process.env)
  t.ok(existsSync(dataDir), 'its data dir exists while it runs')
  t.notOk(stdout.some(l => /bolt1_[0-9a-f]/.test(l)), 'its start-up output holds no join token')
  t.match(stdout.at(-1), /bolt-agent --data \S+ token/, 'it says how to get the join command')
  const status = await runCli(['--data', dataDir, 'status', '--json'], { timeoutMs: 20_000 })
  t.equal(status.code, 0, 'status answers')
  t.equal((JSON.parse(status.stdout) as { members: unknown[] }).members.length, 1, 'a cluster of one')
  // A reader that is gone before the output comes (`bolt-agent status | head -0`): a quiet exit, no EPIPE crash.
  const closed = await new Promise<{ code: number | null, stderr: string }>((resolve, reject) => {
    const c = spawn(process.execPath, [CLI, '--data', dataDir, 'status'], { stdio: ['ignore', 'pipe', 'pipe'] })
    c.stdout.destroy()
    let err = ''
    c.stderr.on('data', (d: Buffer) => { err += d.toString() })
    const timer = setTimeout(() => { c.kill('SIGKILL'); reject(new Error('status with a closed stdout did not end')) }, 20_000)
    c.on('close', code => { clearTimeout(timer); resolve({ code, stderr: err }) })
  })
  t.equal(closed.code, 0, `status whose reader went away exits 0 (${closed.stderr.slice(0, 200)})`)
  t.notMatch(closed.stderr, /EPIPE|\n\s+at /, 'no EPIPE error or stack trace')
  const demo = stdout.some(l => l.startsWith('demo capsule "demo" submitted'))
  t.ok(demo || stdout.some(l => l.startsWith('no demo capsule: ')), `the demo capsule is submitted, or dev says why not (${stdout.find(l => l.includes('demo capsule')) ?? ''})`)
  if (demo) {
    // The demo's submit went through Raft: the banner names the leader, not "electing".
    t.match(stdout.find(l => l.startsWith('members: ')), /^members: \S+=\S+\s+leader: (?!electing)\S+$/, 'the banner names the leader')
    const running = await waitFor(async () => (await runCli(['--data', dataDir, 'ps'], { timeoutMs: 20_000 })).stdout.includes('running'), 30_000, 500)
    t.ok(running >= 0, 'ps shows the demo capsule running')
  }

  // Ctrl-C reaches the agent twice, 20 ms apart (the terminal's process group, and a wrapper passing it on).
  p.kill('SIGINT')
  await new Promise(resolve => setTimeout(resolve, 20))
  p.kill('SIGINT')
  const code = await exited
  t.equal(code, 0, `it exits cleanly, not forced (exit ${code})`)
  t.notOk(existsSync(dataDir), 'its data dir is gone')
  t.same(await mountsUnder(dataDir), [], 'no capsule mount left behind')
})

const NOBODY = 65534

/** The demo capsule's processes as `uid` (its shell loop), and every process whose command line names `dir` (runc, the waiter). */
async function capsuleProcesses (dir: string, uid: number): Promise<string[]> {
  const found: string[] = []
  for (const pid of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ')
    const owner = Number(/^Uid:\s+(\d+)/m.exec(await readFile(`/proc/${pid}/status`, 'utf8').catch(() => ''))?.[1] ?? -1)
    if (cmd.includes(dir) || (owner === uid && cmd.includes('hello from a bolt capsule'))) found.push(`${pid}: ${cmd.slice(0, 120)}`)
  }
  return found
}

// The most common first try is `dev` as a normal user. Its demo capsule runs
// under rootless runc, whose `kill --all` fails without a delegated cgroup;
// the shell loop as PID 1 ignores SIGTERM, so the stop must reach its init
// with SIGKILL, and within the shutdown budget.
t.test('dev as an unprivileged user: Ctrl-C stops the demo capsule and removes the data dir', { skip: process.getuid?.() !== 0 ? 'needs root to drop to nobody' : !existsSync('/usr/bin/setpriv') ? 'needs setpriv' : false }, async t => {
  // Where a non-root agent registers itself for client commands (local-agents.ts): the test's leftover if it made it.
  const registry = join(tmpdir(), `bolt-agent-${NOBODY}`)
  if (!existsSync(registry)) t.teardown(async () => { await rm(registry, { recursive: true, force: true }) })
  const { p, exited, stdout, stderr, dataDir } = await startDev(t, 'setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', process.execPath, CLI, 'dev'], { ...process.env, HOME: tmpdir() })
  const demo = stdout.some(l => l.startsWith('demo capsule "demo" submitted'))
  if (!demo) {
    // Rootless capsules need unprivileged user namespaces; without them dev says why and runs no capsule.
    t.ok(stdout.some(l => l.startsWith('no demo capsule: ')), `dev says why there is no demo capsule (${stdout.find(l => l.includes('demo')) ?? ''})`)
  } else {
    const running = await waitFor(async () => (await capsuleProcesses(dataDir, NOBODY)).some(l => l.includes('while true')), 60_000, 500)
    t.ok(running >= 0, 'the demo capsule runs, as nobody, under rootless runc')
  }
  p.kill('SIGINT')
  const code = await exited
  t.equal(code, 0, `it exits cleanly, not forced by the shutdown deadline (exit ${code}; ${stderr.filter(l => l.includes('too long')).join(' ')})`)
  t.same(await capsuleProcesses(dataDir, NOBODY), [], 'no capsule or runtime process is left')
  t.notOk(existsSync(dataDir), 'its data dir is gone')
})
