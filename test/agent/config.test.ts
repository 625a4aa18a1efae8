import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ConfigSchema, parseConfig } from '../../agent/config.js'
import { repoRoot } from '../../scenarios/report.js'

t.test('cluster.example.toml parses to exactly the defaults', async t => {
  const text = await readFile(join(repoRoot(), 'cluster.example.toml'), 'utf8')
  t.same(parseConfig(text, 'cluster.example.toml'), ConfigSchema.parse({}))
})

t.test('flags win over the file, the file over defaults', async t => {
  const c = parseConfig('profile = "wan"\n[raft]\nvoters = 5\n', 'f.toml', { profile: 'edge' })
  t.equal(c.profile, 'edge')
  t.equal(c.raft.voters, 5)
  t.equal(c.raft.heartbeat_ms, 100)
})

t.test('bad input names the key and what was expected', async t => {
  t.throws(() => parseConfig('voters = 3\n', 'f.toml'), { name: 'ConfigError', message: /unknown key voters/ })
  t.throws(() => parseConfig('[raft]\nvoterz = 3\n', 'f.toml'), { message: /unknown key raft\.voterz/ })
  t.throws(() => parseConfig('[raft]\nvoters = 9\n', 'f.toml'), { message: /raft\.voters:/ })
  t.throws(() => parseConfig('listen = ["tcp://x"]\n', 'f.toml'), { message: /listen\.0: .*multiaddr/ })
  t.throws(() => parseConfig('profile = \n', 'f.toml'), { message: /not valid TOML/ })
  t.throws(() => parseConfig('profile = "moon"\n', 'f.toml'), { message: /profile:/ })
})
