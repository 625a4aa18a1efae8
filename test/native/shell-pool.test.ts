// The pre-spawned shells a capsule start takes instead of forking the agent:
// a pooled command behaves as runCommand (output, exit code, cwd, arguments
// with spaces, timeout), and a pooled waiter execs the waiter script with the
// capsule dir in its command line (what recovery checks to adopt it).
import t from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ShellPool } from '../../native/shell-pool.js'

t.test('a pooled shell runs a command as runCommand does', async t => {
  const pool = new ShellPool('exit 0')
  t.teardown(() => { pool.close() })
  pool.fill()
  const r = await pool.run('sh', ['-c', 'pwd; echo "$1" >&2; exit 3', 'sh', 'two words'], { cwd: '/tmp' })
  t.same({ code: r.exitCode, out: r.stdout, err: r.stderr }, { code: 3, out: '/tmp\n', err: 'two words\n' })
  const failed = await pool.run('ls', ['/no/such/dir/for/shell-pool'])
  t.not(failed.exitCode, 0, 'a failing command reports its exit code')
  t.match(failed.stderr, /no\/such\/dir/)
  const slow = await pool.run('sleep', ['30'], { timeoutMs: 100 })
  t.equal(slow.signal, 'SIGKILL', 'the timeout kills it')
  // The pool is empty now (size 2, and no start ended to refill it): runCommand runs it.
  const direct = await pool.run('echo', ['from a spawn'])
  t.equal(direct.stdout, 'from a spawn\n')
  const newline = await pool.run('printf', ['%s', 'a\nb'])
  t.equal(newline.stdout, 'a\nb', 'an argument with a newline is passed whole (spawned directly)')
})

t.test('a pooled waiter execs the waiter script with the capsule dir in its command line', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-shell-pool-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const pool = new ShellPool('d=$1; shift; tr -d "\\0" </proc/$$/cmdline >"$d/cmdline"; read -r go; echo "$go $*" >"$d/out"')
  t.teardown(() => { pool.close() })
  pool.fill()
  const w = pool.takeWaiter([dir, 'runc', '--root', 'a b'])
  if (w === undefined) throw new Error('no waiter shell in a filled pool')
  const exited = new Promise(resolve => w.once('exit', resolve))
  const keep = setInterval(() => undefined, 1000) // the pooled shell does not hold the event loop itself
  w.stdin?.end('go\n')
  t.equal(await exited, 0)
  clearInterval(keep)
  t.equal(await readFile(join(dir, 'out'), 'utf8'), 'go runc --root a b\n')
  t.match(await readFile(join(dir, 'cmdline'), 'utf8'), dir, 'the capsule dir is in its command line')
})
