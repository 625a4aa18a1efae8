// The edge profile's runtime limits: an edge agent replaces its process with
// one that runs the V8 and allocator limits, once, and only when asked.
import t from 'tap'
import { ConfigSchema } from '../../agent/config.js'
import { EDGE_ENV, EDGE_NODE_FLAGS, EDGE_RUNTIME_MARK, reexecForEdge } from '../../agent/edge-runtime.js'

interface Call { file: string, args: string[], env: NodeJS.ProcessEnv }

function recorder (): { calls: Call[], execve: (file: string, args: string[], env: NodeJS.ProcessEnv) => never } {
  const calls: Call[] = []
  return { calls, execve: ((file: string, args: string[], env: NodeJS.ProcessEnv) => { calls.push({ file, args, env }) }) as (file: string, args: string[], env: NodeJS.ProcessEnv) => never }
}

t.test('profile = "edge" re-executes node with the flags, the same script and arguments', async t => {
  const { calls, execve } = recorder()
  reexecForEdge(ConfigSchema.parse({ profile: 'edge' }), execve)
  t.equal(calls.length, 1)
  const c = calls[0]!
  t.equal(c.file, process.execPath)
  t.same(c.args.slice(1, 1 + EDGE_NODE_FLAGS.length), EDGE_NODE_FLAGS, 'our flags first')
  t.same(c.args.slice(-process.argv.length + 1), process.argv.slice(1), 'then the script and its arguments unchanged')
  t.equal(c.env[EDGE_RUNTIME_MARK], '1', 'marked, so the new process does not do it again')
  for (const [k, v] of Object.entries(EDGE_ENV)) t.equal(c.env[k], process.env[k] ?? v, `${k}: ours unless the user set it`)
})

t.test('no re-exec for other profiles, when turned off, or when already done', async t => {
  const { calls, execve } = recorder()
  reexecForEdge(ConfigSchema.parse({ profile: 'lan' }), execve)
  reexecForEdge(ConfigSchema.parse({ profile: 'edge', edge: { tune_runtime: false } }), execve)
  process.env[EDGE_RUNTIME_MARK] = '1'
  try {
    reexecForEdge(ConfigSchema.parse({ profile: 'edge' }), execve)
  } finally {
    delete process.env[EDGE_RUNTIME_MARK]
  }
  t.equal(calls.length, 0)
})

t.test('a --token value never reaches the new argv (the caller passes it in BOLT_TOKEN)', async t => {
  const { calls, execve } = recorder()
  const saved = process.argv
  process.argv = [saved[0]!, '/x/cli.js', 'join', '/ip4/10.0.0.1/tcp/1', '--token', 'bolt1_secret', '--name', 'n', '--token=bolt1_secret2']
  try {
    reexecForEdge(ConfigSchema.parse({ profile: 'edge' }), execve)
  } finally {
    process.argv = saved
  }
  t.equal(calls.length, 1)
  t.same(calls[0]!.args.slice(-5), ['/x/cli.js', 'join', '/ip4/10.0.0.1/tcp/1', '--name', 'n'], 'the arguments without the token')
  t.notOk(calls[0]!.args.join(' ').includes('bolt1_secret'), 'no token in argv')
})
