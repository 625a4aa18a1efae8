import t from 'tap'
import { parseStack, startOrder, specOf } from '../../agent/stack.js'

t.test('stack files: order, cycles and bad input', async t => {
  const s = parseStack(`
[capsules.web]
image = "r/web:1"
depends_on = ["api"]
[capsules.api]
image = "r/api:1"
memory = "64M"
depends_on = ["db"]
[capsules.db]
image = "r/db:1"
[capsules.db.health]
tcp = "127.0.0.1:5432"
`, 'stack.toml')
  t.same(startOrder(s), ['db', 'api', 'web'])
  t.match(specOf('api', s.capsules.api!), { name: 'api', resources: { memoryBytes: 64 * 1024 * 1024 } })
  t.throws(() => startOrder(parseStack('[capsules.a]\nimage = "x"\ndepends_on = ["b"]\n[capsules.b]\nimage = "y"\ndepends_on = ["a"]\n', 's')), { name: 'StackError', message: /cycle/ })
  t.throws(() => parseStack('[capsules.a]\nimage = "x"\ndepends_on = ["zz"]\n', 's'), { message: /does not define/ })
  t.throws(() => parseStack('[capsules.a]\nimag = "x"\n', 's'), { name: 'StackError' })
  t.throws(() => parseStack('[capsules.a\n', 's'), { message: /not valid TOML/ })
})

t.test('BOLT_SERVICE_<NAME> for each service a capsule depends on, healthy instances only', async t => {
  const { serviceEnv, serviceEnvName } = await import('../../agent/stack.js')
  t.equal(serviceEnvName('match-servers'), 'BOLT_SERVICE_MATCH_SERVERS')
  const catalog = [
    { name: 'db', instances: [{ address: '10.0.0.5', ports: [{ host: 20311 }], health: 'healthy' }, { address: '10.0.0.6', ports: [{ host: 20417 }], health: 'starting' }, { address: 'fd00::1', ports: [{ host: 5432 }], health: 'healthy' }] },
    { name: 'cache', instances: [{ address: '10.0.0.7', ports: [{ host: 6379 }], health: 'unhealthy' }] }
  ]
  t.same(serviceEnv([{ capsule: 'db', service: 'db' }, { capsule: 'cache', service: 'cache' }, { capsule: 'worker', service: 'worker' }], catalog),
    { BOLT_SERVICE_DB: '10.0.0.5:20311,[fd00::1]:5432' })
  const s = parseStack('[capsules.web]\nimage = "x"\n[capsules.web.env]\nA = "1"\n', 's')
  t.match(specOf('web', s.capsules.web!, { BOLT_SERVICE_DB: '1.2.3.4:5' }), { env: { A: '1', BOLT_SERVICE_DB: '1.2.3.4:5' } })
})

t.test('memory sizes are strict: a bare number or less than 4 MiB is refused with the key', async t => {
  t.throws(() => parseStack('[capsules.a]\nimage = "x"\nmemory = "10"\n', 's.toml'), { name: 'StackError', message: /capsules\.a\.memory: 10: give a unit/ })
  t.throws(() => parseStack('[capsules.a]\nimage = "x"\nmemory = "1M"\n', 's.toml'), { name: 'StackError', message: /capsules\.a\.memory: 1M: below the smallest limit/ })
  t.match(specOf('a', parseStack('[capsules.a]\nimage = "x"\nmemory = "4M"\n', 's.toml').capsules.a!), { resources: { memoryBytes: 4 * 1024 * 1024 } })
})

t.test('network: bridge, host or none, passed to the capsule spec', async t => {
  t.match(specOf('a', parseStack('[capsules.a]\nimage = "x"\nnetwork = "host"\n', 's.toml').capsules.a!), { network: 'host' })
  t.notOk('network' in specOf('a', parseStack('[capsules.a]\nimage = "x"\n', 's.toml').capsules.a!), 'absent stays absent (the runtime\'s default)')
  t.throws(() => parseStack('[capsules.a]\nimage = "x"\nnetwork = "wifi"\n', 's.toml'), { name: 'StackError', message: /capsules\.a\.network/ })
})
