// One suite every OCI runtime driver must pass (runc and crun run it alike),
// in the style of libp2p's interface-compliance-tests.
import type { Test } from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createRuntime, detectRuntimes, type LogRecord, type NodeRuntime, type RuntimeName } from '../../native/index.js'
import { busyboxImage } from './image-fixture.js'

export async function collect (it: AsyncIterable<LogRecord>): Promise<LogRecord[]> {
  const out: LogRecord[] = []
  for await (const r of it) out.push(r)
  return out
}

export async function withRuntime (t: Test, runtime: RuntimeName | 'auto', opts: { rootfsMode?: 'overlay' | 'copy' } = {}): Promise<{ rt: NodeRuntime, image: string, dataDir: string }> {
  const dataDir = await mkdtemp(join(tmpdir(), `bolt-native-${runtime}-`))
  const rt = await createRuntime({ dataDir, runtime, ...opts })
  const img = await busyboxImage()
  const prepared = await rt.prepareImage(img.layoutDir, img.ref)
  t.teardown(async () => {
    for (const c of await rt.list()) await rt.remove(c.name, { force: true }).catch(() => undefined)
    await rt.close()
    await rm(dataDir, { recursive: true, force: true })
  })
  return { rt, image: prepared.id, dataDir }
}

export async function runtimeInstalled (name: RuntimeName): Promise<boolean> {
  return (await detectRuntimes()).some(r => r.name === name)
}

/**
 * The CPU quota and period ("QUOTA PERIOD") of the cgroup above the one
 * process `pid` is in: cgroup v1's cpu hierarchy, or v2's cpu.max.
 */
async function cpuQuotaAbove (pid: number): Promise<string> {
  const mounts = (await readFile('/proc/mounts', 'utf8')).split('\n').map(l => l.split(' '))
  const own = (await readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n').map(l => l.split(':'))
  const v1 = mounts.find(m => m[2] === 'cgroup' && (m[3] ?? '').split(',').includes('cpu'))
  if (v1 !== undefined) {
    const path = own.find(l => (l[1] ?? '').split(',').includes('cpu'))?.[2] ?? '/'
    const dir = join(v1[1]!, dirname(path))
    return `${(await readFile(join(dir, 'cpu.cfs_quota_us'), 'utf8')).trim()} ${(await readFile(join(dir, 'cpu.cfs_period_us'), 'utf8')).trim()}`
  }
  const v2 = mounts.find(m => m[2] === 'cgroup2')
  const path = own.find(l => l[0] === '0')?.[2] ?? '/'
  return (await readFile(join(v2![1]!, dirname(path), 'cpu.max'), 'utf8')).trim()
}

export function complianceSuite (t: Test, runtime: RuntimeName): void {
  t.test('output goes to the log, the exit code is reported', async t => {
    const { rt, image } = await withRuntime(t, runtime)
    const h = await rt.run({ name: 'hello', image, args: ['sh', '-c', 'echo hello; echo oops >&2; exit 3'] })
    const exit = await h.exited
    t.match(exit, { exitCode: 3, reason: 'exited', oomKilled: false })
    const lines = await collect(rt.logs('hello'))
    t.ok(lines.some(l => l.stream === 'stdout' && l.line === 'hello'))
    t.ok(lines.some(l => l.stream === 'stderr' && l.line === 'oops'))
    t.equal((await rt.state('hello')).status, 'exited')
  })

  t.test('stdout and stderr interleave in the order written, once each line was read', async t => {
    // Two pipes keep no order between them: lines written back to back on
    // both may be read in either order (Docker has the same limit). What
    // holds is that a line written after the agent read the previous one
    // (on either stream) comes after it: each line here waits for that.
    const { rt, image } = await withRuntime(t, runtime)
    const script = 'mkdir -p /tmp; echo a; until [ -e /tmp/1 ]; do sleep 0.02; done; echo b >&2; until [ -e /tmp/2 ]; do sleep 0.02; done; echo c; until [ -e /tmp/3 ]; do sleep 0.02; done; echo d >&2'
    await rt.run({ name: 'inter', image, args: ['sh', '-c', script] })
    const seen: string[] = []
    for await (const r of rt.logs('inter', { follow: true, signal: AbortSignal.timeout(60_000) })) {
      seen.push(`${r.stream}:${r.line}`)
      if (seen.length === 4) break
      await rt.exec('inter', ['sh', '-c', `: > /tmp/${seen.length}`])
    }
    t.same(seen, ['stdout:a', 'stderr:b', 'stdout:c', 'stderr:d'], 'followed: in the order written')
    await rt.wait('inter')
    t.same((await collect(rt.logs('inter'))).map(r => `${r.stream}:${r.line}`), seen, 'and so in the log file')
  })

  t.test('a memory limit produces an OOM kill reported as OOM', async t => {
    const { rt, image } = await withRuntime(t, runtime)
    const h = await rt.run({ name: 'hog', image, resources: { memoryBytes: 16 * 1024 * 1024 }, args: ['sh', '-c', 'x=0123456789abcdef; while :; do x=$x$x; done'] })
    const exit = await h.exited
    t.match(exit, { reason: 'oom', oomKilled: true, exitCode: 137 })
  })

  t.test('a pids limit caps the processes', async t => {
    const { rt, image } = await withRuntime(t, runtime)
    await rt.run({ name: 'forker', image, resources: { pids: 6 }, args: ['sh', '-c', '(for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 30 & done); echo started; exec sleep 30'] })
    // stdout and stderr are separate pipes: wait for both the marker and the fork error.
    let started = false
    let forkFailed = false
    for await (const r of rt.logs('forker', { follow: true, signal: AbortSignal.timeout(10_000) })) {
      if (r.line === 'started') started = true
      if (r.stream === 'stderr' && /fork|Resource temporarily unavailable/i.test(r.line)) forkFailed = true
      if (started && forkFailed) break
    }
    t.ok(forkFailed, 'fork failures were logged')
    const st = await rt.stats('forker')
    t.ok(st.pids <= 6 && st.pids >= 2, `pids ${st.pids} within the limit`)
    await rt.stop('forker', { timeoutMs: 200 })
  })

  t.test('a CPU limit is in force once the capsule runs, set on its parent cgroup', async t => {
    const { rt, image } = await withRuntime(t, runtime)
    // Set after the start (the OCI runtime's own setup runs in the capsule's cgroup, unthrottled).
    await rt.run({ name: 'cpu', image, resources: { cpus: 0.25 }, args: ['sleep', '30'] })
    // The pid file can be seen before its content is written: poll until it is.
    let st = await rt.state('cpu')
    for (const deadline = Date.now() + 5000; st.pid === null && st.status !== 'exited' && Date.now() < deadline;) {
      await new Promise(resolve => setTimeout(resolve, 20))
      st = await rt.state('cpu')
    }
    t.ok(st.pid !== null, `running (${JSON.stringify(st)})`)
    if (!st.limitsEnforced) { t.pass('this node cannot enforce limits'); return }
    const quota = await cpuQuotaAbove(st.pid!)
    t.equal(quota, '25000 100000', 'quota 0.25 × 100 ms on the capsule\'s parent cgroup')
    await rt.stop('cpu', { timeoutMs: 200 })
  })

  t.test('stop sends SIGTERM, then SIGKILL after the timeout', async t => {
    const { rt, image } = await withRuntime(t, runtime)
    // A shell that traps TERM exits by itself.
    await rt.run({ name: 'polite', image, args: ['sh', '-c', 'trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 0.05; done'] })
    for await (const r of rt.logs('polite', { follow: true, signal: AbortSignal.timeout(10_000) })) if (r.line === 'ready') break
    t.match(await rt.stop('polite', { timeoutMs: 5000 }), { exitCode: 7, reason: 'stopped' })
    t.ok((await collect(rt.logs('polite'))).some(l => l.line === 'got-term'))
    // PID 1 without a handler ignores SIGTERM: only the SIGKILL ends it.
    await rt.run({ name: 'stubborn', image, args: ['sleep', '1000'] })
    t.match(await rt.stop('stubborn', { timeoutMs: 300 }), { exitCode: 137, reason: 'stopped' })
  })

  t.test('exec runs in the capsule; stats read its cgroup', async t => {
    const { rt, image } = await withRuntime(t, runtime)
    await rt.run({ name: 'box', image, hostname: 'boxhost', resources: { memoryBytes: 64 * 1024 * 1024 }, args: ['sleep', '1000'] })
    const r = await rt.exec('box', ['cat', '/etc/hostname'])
    t.equal(r.exitCode, 0)
    t.equal(r.stdout.trim(), 'boxhost')
    t.equal((await rt.exec('box', ['sh', '-c', 'echo err >&2; exit 5'])).exitCode, 5)
    const st = await rt.stats('box')
    t.equal(st.memoryLimitBytes, 64 * 1024 * 1024)
    t.ok(st.pids >= 1)
    t.ok(st.memoryBytes > 0)
    t.ok(st.cpuNanos >= 0)
    t.ok((await rt.state('box')).pid !== null, 'state has the pid')
    await rt.stop('box', { timeoutMs: 100 })
    await t.rejects(rt.exec('box', ['true']), { name: 'CapsuleStateError' })
  })

  t.test('private network, read-only rootfs, env and cwd', async t => {
    const { rt, image } = await withRuntime(t, runtime)
    const h = await rt.run({
      name: 'iso',
      image,
      network: 'private',
      readOnlyRootfs: true,
      env: { GREETING: 'hi' },
      cwd: '/tmp',
      args: ['sh', '-c', 'cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " "; touch /ro 2>/dev/null && echo rootfs-writable; touch /tmp/ok && echo tmp-writable; echo "$GREETING $(pwd)"']
    })
    t.equal((await h.exited).exitCode, 0)
    const lines = (await collect(rt.logs('iso'))).map(l => l.line)
    t.same(lines.filter(l => !['tmp-writable', 'hi /tmp'].includes(l)), ['lo'], 'only loopback, rootfs read-only')
    t.ok(lines.includes('tmp-writable'))
    t.ok(lines.includes('hi /tmp'))
  })

  t.test('the default capability set lacks CAP_NET_RAW, read inside the running capsule', async t => {
    // Security issue #21 finding 3: with NET_RAW a capsule on the host network sniffs loopback.
    const CAP_NET_RAW_BIT = 13n
    const { rt, image } = await withRuntime(t, runtime)
    const capsOf = async (name: string, capAdd: string[]): Promise<{ eff: bigint, bnd: bigint }> => {
      const h = await rt.run({ name, image, capAdd, args: ['sh', '-c', 'grep -E "^Cap(Eff|Bnd):" /proc/self/status'] })
      t.equal((await h.exited).exitCode, 0, `${name} read its status`)
      const lines = (await collect(rt.logs(name))).map(l => l.line)
      const hex = (key: string): bigint => BigInt('0x' + (lines.find(l => l.startsWith(key))?.split(/\s+/)[1] ?? 'x'))
      return { eff: hex('CapEff:'), bnd: hex('CapBnd:') }
    }
    const plain = await capsOf('caps', [])
    t.equal((plain.eff >> CAP_NET_RAW_BIT) & 1n, 0n, `CapEff ${plain.eff.toString(16)} has no NET_RAW`)
    t.equal((plain.bnd >> CAP_NET_RAW_BIT) & 1n, 0n, 'nor the bounding set')
    t.not(plain.eff, 0n, 'the capsule still runs with the rest of the default set')
    const asked = await capsOf('caps-raw', ['CAP_NET_RAW'])
    t.equal((asked.eff >> CAP_NET_RAW_BIT) & 1n, 1n, 'a capsule that asks for CAP_NET_RAW gets it (the check above can see it)')
  })

  t.test('logs rotate by size and read back in order', async t => {
    const { rt, image, dataDir } = await withRuntime(t, runtime)
    const h = await rt.run({ name: 'chatty', image, log: { maxBytes: 4096, maxFiles: 3 }, args: ['sh', '-c', 'i=0; while [ $i -lt 600 ]; do echo "line $i"; i=$((i+1)); done'] })
    t.equal((await h.exited).exitCode, 0)
    const { readdir } = await import('node:fs/promises')
    const files = (await readdir(join(dataDir, 'capsules', 'chatty'))).filter(f => f.startsWith('capsule.log')).sort()
    t.same(files, ['capsule.log', 'capsule.log.1', 'capsule.log.2'], 'at most maxFiles files')
    const lines = (await collect(rt.logs('chatty'))).map(l => l.line)
    t.equal(lines[lines.length - 1], 'line 599', 'the newest line is kept')
    const nums = lines.map(l => Number(l.slice(5)))
    t.same(nums, Array.from({ length: nums.length }, (_, i) => 600 - nums.length + i), 'a contiguous, ordered tail')
  })

  t.test('exec takes env and cwd', async t => {
    const { rt, image } = await withRuntime(t, runtime)
    await rt.run({ name: 'ex', image, args: ['sleep', '1000'] })
    const r = await rt.exec('ex', ['sh', '-c', 'echo "$FOO $(pwd)"'], { env: ['FOO=bar'], cwd: '/tmp' })
    t.equal(r.stdout.trim(), 'bar /tmp')
    await rt.stop('ex', { timeoutMs: 100 })
  })

  t.test('a command that cannot start is reported as start-failed', async t => {
    const { rt, image } = await withRuntime(t, runtime)
    const h = await rt.run({ name: 'nope', image, args: ['/does/not/exist'] })
    const exit = await h.exited
    t.equal(exit.reason, 'start-failed')
    t.not(exit.exitCode, 0)
  })
}
