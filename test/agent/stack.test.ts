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

t.test('memory sizes are strict: a bare number or less than 4 MiB is refused with the key', async t => {
  t.throws(() => parseStack('[capsules.a]\nimage = "x"\nmemory = "10"\n', 's.toml'), { name: 'StackError', message: /capsules\.a\.memory: 10: give a unit/ })
  t.throws(() => parseStack('[capsules.a]\nimage = "x"\nmemory = "1M"\n', 's.toml'), { name: 'StackError', message: /capsules\.a\.memory: 1M: below the smallest limit/ })
  t.match(specOf('a', parseStack('[capsules.a]\nimage = "x"\nmemory = "4M"\n', 's.toml').capsules.a!), { resources: { memoryBytes: 4 * 1024 * 1024 } })
})
