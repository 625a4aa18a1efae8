// Bad input to the CLI: one clear line, the right exit code, no stack trace.
import t from 'tap'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli } from '../helpers/harness.js'

const TOKEN = 'bolt1_' + '1'.repeat(16) + '_' + '2'.repeat(24) + '_' + '3'.repeat(64)

t.test('bad input gives one clear line and the right exit code', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-cli-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const write = async (name: string, text: string): Promise<string> => { const f = join(dir, name); await writeFile(f, text); return f }
  const cases: Array<{ what: string, args: string[], code: number, line: RegExp }> = [
    { what: 'malformed TOML', args: ['--config', await write('bad.toml', 'listen = [\n'), 'init'], code: 1, line: /config error: .*bad\.toml is not valid TOML/ },
    { what: 'unknown key', args: ['--config', await write('unknown.toml', '[raft]\nvoterz = 3\n'), 'init'], code: 1, line: /unknown key raft\.voterz/ },
    { what: 'bad value', args: ['--config', await write('value.toml', '[raft]\nvoters = "three"\n'), 'init'], code: 1, line: /raft\.voters: / },
    { what: 'bad listen multiaddr', args: ['init', '--listen', 'tcp://0.0.0.0:1'], code: 1, line: /listen\.0: a multiaddr/ },
    { what: 'bad seed multiaddr', args: ['join', 'not-an-addr', '--token', TOKEN, '--listen', '/ip4/127.0.0.1/tcp/0'], code: 2, line: /not-an-addr is not a multiaddr/ },
    { what: 'missing token', args: ['join', '/ip4/127.0.0.1/tcp/9'], code: 2, line: /join needs the join token: BOLT_TOKEN=T/ },
    { what: 'token twice', args: ['join', '/ip4/127.0.0.1/tcp/9', '--token', TOKEN, '--token-file', await write('tok', TOKEN)], code: 2, line: /join takes --token or --token-file, not both/ },
    { what: 'missing token file', args: ['join', '/ip4/127.0.0.1/tcp/9', '--token-file', join(dir, 'absent')], code: 2, line: /--token-file \S+absent: cannot read it \(ENOENT\)/ },
    { what: 'malformed token', args: ['join', '/ip4/127.0.0.1/tcp/9', '--token', 'hello'], code: 2, line: /--token: malformed token/ },
    { what: 'unreachable seed', args: ['join', '/ip4/127.0.0.1/tcp/9/p2p/12D3KooWGzh6Y8rhAPdbVEA7cxF5M4Z8ZkT3N2wJ8QYw4XK1pTn7', '--token', TOKEN, '--listen', '/ip4/127.0.0.1/tcp/0'], code: 1, line: /join failed: cannot reach 127\.0\.0\.1/ },
    { what: 'unknown command', args: ['frobnicate'], code: 2, line: /unknown command/ },
    { what: 'memory without a unit', args: ['run', 'busybox', '--memory', '10'], code: 2, line: /--memory 10: give a unit, e\.g\. 512M/ },
    { what: 'memory below the floor', args: ['run', 'busybox', '--memory', '1M'], code: 2, line: /--memory 1M: below the smallest limit/ },
    { what: 'no agent running', args: ['status'], code: 1, line: /no agent is running with data dir/ }
  ]
  for (const c of cases) {
    const data = join(dir, `data-${c.what.replace(/\W+/g, '-')}`)
    const r = await runCli(['--data', data, ...c.args], { timeoutMs: 30_000 })
    t.equal(r.code, c.code, `${c.what}: exit ${c.code}`)
    const lines = r.stderr.split('\n').filter(l => l.trim() !== '' && !l.startsWith('{'))
    t.match(lines.join('\n'), c.line, `${c.what}: says what is wrong`)
    t.notMatch(r.stderr, /\n\s+at .*\(/, `${c.what}: no stack trace`)
  }
})

t.test('a data dir that cannot be made is an error, not a hang', async t => {
  // mkdir answers ENOENT inside /proc, where Node's recursive mkdir retried forever.
  const r = await runCli(['--data', '/proc/bolt-agent-test/data', 'init', '--listen', '/ip4/127.0.0.1/tcp/0'], { timeoutMs: 30_000 })
  t.equal(r.code, 1)
  t.match(r.stderr, /cannot create the data dir \/proc\/bolt-agent-test\/data: ENOENT.*choose another with --data/)
  // A file where the data dir should be.
  const dir = await mkdtemp(join(tmpdir(), 'bolt-cli-file-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const file = join(dir, 'not-a-dir')
  await writeFile(file, 'x')
  const f = await runCli(['--data', file, 'init', '--listen', '/ip4/127.0.0.1/tcp/0'], { timeoutMs: 30_000 })
  t.equal(f.code, 1)
  t.match(f.stderr, `cannot create the data dir ${file}: ENOTDIR: ${file} is not a directory`)
})

t.test('a truncated api.json is one clear line, not a SyntaxError', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-cli-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await mkdir(join(dir, 'data'))
  // What a full disk or a crash mid-write would leave.
  await writeFile(join(dir, 'data', 'api.json'), '{"url":"http://127.0.0.1:7070","tok')
  const r = await runCli(['--data', join(dir, 'data'), 'status'], { timeoutMs: 30_000 })
  t.equal(r.code, 1)
  const lines = r.stderr.split('\n').filter(l => l.trim() !== '')
  t.equal(lines.length, 1, `one line: ${r.stderr}`)
  t.match(lines[0], /^bolt-agent: .*data\/api\.json is damaged \(not JSON: .*\); if an agent is running, restart it/)
  t.notMatch(r.stderr, /SyntaxError|\n\s+at /)
})
