// The health check parsers (--check, durations, stack keys), the threshold
// maths, the batching of transitions, and the Raft apply of instance.health.
import t from 'tap'
import fc from 'fast-check'
import { HealthCheckSyntaxError, HealthSchema, formatCheck, parseCheck, parseDuration } from '../../agent/services/health-spec.js'
import { HealthVerdict } from '../../agent/services/health-probe.js'
import { HealthReporter } from '../../agent/services/health-reports.js'
import { healthFromFlags } from '../../agent/services/health-flags.js'
import { UserError } from '../../agent/errors.js'
import { parseStack, StackError } from '../../agent/stack.js'
import { CapsuleTable } from '../../agent/state/capsules.js'
import { CapsuleSpecSchema } from '../../agent/scheduler/spec.js'
import type { CommandInput } from '../../agent/state/cluster-state.js'

t.test('parseCheck: the three kinds, and one clear error otherwise', async t => {
  t.same(parseCheck('tcp:7777'), { kind: 'tcp', port: 7777 })
  t.same(parseCheck('http:/healthz'), { kind: 'http', path: '/healthz' })
  t.same(parseCheck('http:8080/a/b?x=1'), { kind: 'http', path: '/a/b?x=1', port: 8080 })
  t.same(parseCheck('exec:test -f /tmp/ok'), { kind: 'exec', command: 'test -f /tmp/ok' })
  for (const [bad, why] of [['http:', /no path/], ['http:8080', /no path/], ['tcp:', /no port/], ['tcp:70000', /1 to 65535/], ['tcp:abc', /not a number/], ['exec:', /no command/], ['udp:53', /expected tcp:PORT/], ['', /expected tcp:PORT/], ['http:/a b', /printable/]] as const) {
    t.throws(() => parseCheck(bad), { name: 'HealthCheckSyntaxError', message: why }, bad)
  }
  t.equal(formatCheck(parseCheck('http:81/x')), 'http:81/x')
})

t.test('parseCheck and parseDuration fuzzed: a check or HealthCheckSyntaxError, never anything else', async t => {
  fc.assert(fc.property(fc.oneof(fc.string(), fc.constantFrom('tcp:', 'http:', 'exec:').chain(p => fc.string().map(s => p + s))), s => {
    try {
      const c = parseCheck(s)
      // Whatever parses is accepted by the spec schema and round-trips.
      HealthSchema.parse({ check: c })
      return parseCheck(formatCheck(c)).kind === c.kind
    } catch (err) {
      return err instanceof HealthCheckSyntaxError
    }
  }), { numRuns: 3000 })
  fc.assert(fc.property(fc.string(), s => {
    try { return Number.isInteger(parseDuration(s)) && parseDuration(s) >= 0 } catch (err) { return err instanceof HealthCheckSyntaxError }
  }), { numRuns: 2000 })
  t.equal(parseDuration('2s'), 2000)
  t.equal(parseDuration('500ms'), 500)
  t.equal(parseDuration('1m'), 60_000)
  t.equal(parseDuration('250'), 250)
})

t.test('run flags: the spec fields, or a usage error (exit 2) naming the flag', async t => {
  t.same(healthFromFlags({ check: 'exec:true', checkInterval: '1s', unhealthyThreshold: '2', restartUnhealthy: true, service: 'web' }),
    { service: 'web', health: { check: { kind: 'exec', command: 'true' }, intervalMs: 1000, unhealthyThreshold: 2, restartUnhealthy: true } })
  t.same(healthFromFlags({}), {})
  for (const [flags, why] of [
    [{ check: 'http:' }, /^--check http:: no path/],
    [{ checkInterval: '1s' }, /need --check/],
    [{ check: 'tcp:1', checkInterval: 'soon' }, /^--check-interval soon: expected a duration/],
    [{ check: 'tcp:1', checkInterval: '10ms' }, /^--check-interval: /],
    [{ check: 'tcp:1', unhealthyThreshold: '0' }, /^--unhealthy-threshold 0: expected a whole number/],
    [{ service: 'Web_1' }, /^--service Web_1: expected a DNS label/]
  ] as const) {
    let err: unknown
    try { healthFromFlags(flags) } catch (e) { err = e }
    t.ok(err instanceof UserError && err.exitCode === 2 && why.test(err.message), `${JSON.stringify(flags)}: ${String((err as Error | undefined)?.message)}`)
  }
  fc.assert(fc.property(fc.record({ check: fc.option(fc.string(), { nil: undefined }), checkInterval: fc.option(fc.string(), { nil: undefined }), checkTimeout: fc.option(fc.string(), { nil: undefined }), healthyThreshold: fc.option(fc.string(), { nil: undefined }), unhealthyThreshold: fc.option(fc.string(), { nil: undefined }), service: fc.option(fc.string(), { nil: undefined }) }), flags => {
    try {
      const r = healthFromFlags(flags)
      return r.health === undefined || HealthSchema.safeParse(r.health).success
    } catch (err) {
      return err instanceof UserError && err.exitCode === 2 && !err.message.includes('\n')
    }
  }), { numRuns: 2000 })
})

t.test('stack health keys', async t => {
  const s = parseStack('[capsules.web]\nimage = "x"\n[capsules.web.health]\ncheck = "http:8080/healthz"\ninterval = "2s"\nunhealthy_threshold = 2\n', 'stack.toml')
  t.equal(s.capsules.web?.health?.check, 'http:8080/healthz')
  t.throws(() => parseStack('[capsules.web]\nimage = "x"\n[capsules.web.health]\ncheck = "http:"\n', 'stack.toml'), { name: 'StackError', message: /stack\.toml: capsules\.web\.health\.check: http:: no path/ })
  t.throws(() => parseStack('[capsules.web]\nimage = "x"\n[capsules.web.health]\ninterval = "2s"\n', 'stack.toml'), StackError)
})

t.test('thresholds: streaks make the verdict, single blips do not', async t => {
  const v = new HealthVerdict({ healthyThreshold: 2, unhealthyThreshold: 3 })
  t.equal(v.state, 'starting')
  t.equal(v.record(true), undefined, 'one pass is not enough at threshold 2')
  t.equal(v.record(true), 'healthy')
  t.equal(v.record(false), undefined)
  t.equal(v.record(true), undefined, 'a blip resets the failure streak')
  t.equal(v.record(false), undefined)
  t.equal(v.record(false), undefined)
  t.equal(v.record(false), 'unhealthy', 'three failures in a row')
  t.equal(v.record(true), undefined)
  t.equal(v.record(true), 'healthy')
  const never = new HealthVerdict({ healthyThreshold: 1, unhealthyThreshold: 1 })
  t.equal(never.record(false), 'unhealthy', 'a failing start goes straight to unhealthy at threshold 1')
})

t.test('transitions are batched into few instance.health commands, latest verdict wins', async t => {
  const writes: CommandInput[] = []
  const r = new HealthReporter({ node: 'n1', write: async (cmd) => { writes.push(cmd); return { ok: true } } })
  t.teardown(() => { r.stop() })
  r.report('a', 1, 'healthy')
  r.report('b', 1, 'healthy')
  r.report('a', 1, 'unhealthy')
  await new Promise(resolve => setTimeout(resolve, 400))
  t.equal(writes.length, 1, 'one Raft command for a burst')
  t.same(writes[0], { op: 'instance.health', node: 'n1', updates: [{ instance: 'b', generation: 1, health: 'healthy' }, { instance: 'a', generation: 1, health: 'unhealthy' }] })
  // A failed write is retried with what is pending then.
  let fail = true
  const w2: CommandInput[] = []
  const r2 = new HealthReporter({ node: 'n1', write: async (cmd) => { if (fail) { fail = false; throw new Error('no leader') } w2.push(cmd); return { ok: true } } })
  t.teardown(() => { r2.stop() })
  r2.report('c', 2, 'healthy')
  await new Promise(resolve => setTimeout(resolve, 1500))
  t.same(w2, [{ op: 'instance.health', node: 'n1', updates: [{ instance: 'c', generation: 2, health: 'healthy' }] }], 'retried after a failure')
})

t.test('instance.health applies only from the node running the current placement', async t => {
  const table = new CapsuleTable()
  const spec = CapsuleSpecSchema.parse({ name: 'web', image: 'x', ports: [{ container: 8080 }], health: { check: { kind: 'tcp', port: 8080 } } })
  t.ok(table.apply({ op: 'capsule.create', req: '1', spec }).ok)
  t.ok(table.apply({ op: 'capsule.place', req: '2', instance: 'web', node: 'n1', gpuIndexes: [], generation: 0 }).ok)
  const i = table.instance('web')!.instance
  t.same(i.ports, [{ host: 8080, container: 8080, proto: 'tcp' }], 'host network: the declared port is the host port')
  t.equal(i.health, 'starting')
  t.notOk(table.apply({ op: 'instance.health', req: '3', node: 'n1', updates: [{ instance: 'web', generation: 1, health: 'healthy' }] }).ok, 'not running yet')
  t.ok(table.apply({ op: 'capsule.report', req: '4', instance: 'web', node: 'n1', generation: 1, state: 'running', exitCode: null, reason: null, restarts: 0 }).ok)
  t.notOk(table.apply({ op: 'instance.health', req: '5', node: 'n2', updates: [{ instance: 'web', generation: 1, health: 'healthy' }] }).ok, 'another node cannot speak for it')
  t.notOk(table.apply({ op: 'instance.health', req: '6', node: 'n1', updates: [{ instance: 'web', generation: 0, health: 'healthy' }] }).ok, 'a stale generation is refused')
  t.ok(table.apply({ op: 'instance.health', req: '7', node: 'n1', updates: [{ instance: 'web', generation: 1, health: 'healthy' }] }).ok)
  t.equal(table.instance('web')!.instance.health, 'healthy')
  t.ok(table.apply({ op: 'capsule.report', req: '8', instance: 'web', node: 'n1', generation: 1, state: 'pending', exitCode: 1, reason: 'restarting', restarts: 0 }).ok)
  t.equal(table.instance('web')!.instance.health, 'starting', 'a restart is checked afresh')
})
