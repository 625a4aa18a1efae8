// The `-p` parser, the port rules of the capsule spec and stacks, the
// scheduler's port picking, and bad input at the CLI: one clear line, exit 2.
import t from 'tap'
import fc from 'fast-check'
import { parsePortOption, PortOptionError } from '../../agent/ports.js'
import { CapsuleSpecSchema, portsProblem } from '../../agent/scheduler/spec.js'
import { parseStack, StackError } from '../../agent/stack.js'
import { CapacityView, pickPorts } from '../../agent/scheduler/placement.js'
import { runCli } from '../helpers/harness.js'
import { mapTarget, mapTargets } from '../../native/net/port-map.js'
import { contains, overlaps, parseSubnet, subnetOf } from '../../native/net/cidr.js'
import { subnetConflict } from '../../agent/capsule-network.js'

t.test('parsePortOption: the forms run -p takes', async t => {
  t.same(parsePortOption('8080:80'), { host: 8080, container: 80, proto: 'tcp' })
  t.same(parsePortOption('7777/udp'), { container: 7777, proto: 'udp' })
  t.same(parsePortOption('1:65535/TCP'), { host: 1, container: 65535, proto: 'tcp' })
  for (const bad of ['70000', 'abc', '0', '0:80', '80:0', '65536:80', '80/sctp', '1:2:3', '', ':80', '80:', '-1', '8080 :80', '1e3', '0x50']) {
    t.throws(() => parsePortOption(bad), PortOptionError, `-p ${JSON.stringify(bad)} is refused`)
  }
  t.match(() => parsePortOption('70000'), /./)
  t.throws(() => parsePortOption('70000'), /container port 70000 is outside 1-65535/)
  t.throws(() => parsePortOption('abc'), /"abc" is not a port number/)
})

t.test('parsePortOption fuzzed: a port request or a PortOptionError, never anything else', async t => {
  const valid = fc.tuple(fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }), fc.integer({ min: 1, max: 65535 }), fc.constantFrom('', '/tcp', '/udp'))
    .map(([h, c, p]) => ({ text: `${h !== undefined ? `${h}:` : ''}${c}${p}`, h, c, p: p === '/udp' ? 'udp' : 'tcp' }))
  fc.assert(fc.property(valid, v => {
    const r = parsePortOption(v.text)
    return r.container === v.c && r.host === v.h && r.proto === v.p
  }), { numRuns: 2000 })
  const junk = fc.oneof(fc.string({ maxLength: 40 }), fc.stringMatching(/^[0-9:/a-z]{0,20}$/), fc.string({ unit: 'binary', maxLength: 40 }))
  fc.assert(fc.property(junk, text => {
    try {
      const r = parsePortOption(text)
      return Number.isInteger(r.container) && r.container >= 1 && r.container <= 65535 && (r.host === undefined || (r.host >= 1 && r.host <= 65535)) && (r.proto === 'tcp' || r.proto === 'udp')
    } catch (err) {
      return err instanceof PortOptionError && !err.message.includes('\n')
    }
  }), { numRuns: 5000 })
})

t.test('the spec refuses ports that cannot work in its network mode', async t => {
  const base = { name: 'x', image: 'i' }
  t.ok(CapsuleSpecSchema.safeParse({ ...base, ports: [{ host: 8080, container: 80 }] }).success, 'bridge: any host port')
  t.notOk(CapsuleSpecSchema.safeParse({ ...base, ports: [{ host: 70000, container: 80 }] }).success, 'host port above 65535')
  t.notOk(CapsuleSpecSchema.safeParse({ ...base, network: 'none', ports: [{ container: 80 }] }).success, 'none publishes nothing')
  t.notOk(CapsuleSpecSchema.safeParse({ ...base, network: 'host', ports: [{ host: 8080, container: 80 }] }).success, 'host network: no remapping')
  t.ok(CapsuleSpecSchema.safeParse({ ...base, network: 'host', ports: [{ container: 80 }] }).success, 'host network: the port itself')
  t.match(portsProblem('bridge', [{ host: 1, container: 2, proto: 'udp' }, { host: 1, container: 3, proto: 'udp' }]), /host port 1\/udp is asked for twice/)
  t.equal(portsProblem('bridge', [{ host: 1, container: 2, proto: 'udp' }, { host: 1, container: 3, proto: 'tcp' }]), undefined, 'one port, two protocols')
})

t.test('stacks: two capsules asking one static port are refused', async t => {
  const two = '[capsules.a]\nimage = "i"\nports = ["7777:80/udp"]\n[capsules.b]\nimage = "i"\nports = ["7777:90/udp"]\n'
  t.throws(() => parseStack(two, 's.toml'), StackError)
  t.throws(() => parseStack(two, 's.toml'), /capsules a and b both ask for host port 7777\/udp/)
  t.doesNotThrow(() => parseStack(two.replace('7777:90/udp', '7777:90/tcp'), 's.toml'), 'the same number on another protocol is fine')
  t.doesNotThrow(() => parseStack('[capsules.a]\nimage = "i"\nports = ["80"]\nreplicas = 3\n[capsules.b]\nimage = "i"\nports = ["80"]\n', 's.toml'), 'dynamic ports never collide')
  t.throws(() => parseStack('[capsules.a]\nimage = "i"\nports = ["abc"]\n', 's.toml'), /capsules\.a\.ports: -p abc/)
})

t.test('placement: a static port once per node, dynamic ports from the range', async t => {
  const nodes = [{ id: 'a', cpus: 4, memoryBytes: 2 ** 30, gpus: [], labels: {}, portRange: [30000, 30001] as [number, number] }, { id: 'b', cpus: 4, memoryBytes: 2 ** 30, gpus: [], labels: {} }]
  const view = new CapacityView(nodes)
  const d = { capsule: 'm', cpu: 0.1, memoryBytes: 1024, gpus: { count: 0 }, on: {}, strategy: 'binpack' as const, ports: [{ host: 7777, container: 7777, proto: 'udp' as const }] }
  const r1 = view.place(d)
  const r2 = view.place(d)
  t.ok(r1.ok && r2.ok && r1.node !== r2.node, 'two replicas on two nodes')
  t.same(view.place(d), { ok: false, reason: 'port 7777/udp is taken on every node' })
  const dyn = { ...d, capsule: 'n', ports: [{ container: 80, proto: 'tcp' as const }] }
  const picked = [view.place({ ...dyn, on: {} }), view.place(dyn), view.place(dyn)]
  const onA = picked.filter(p => p.ok && p.node === 'a').map(p => p.ok ? p.ports[0]?.host : 0)
  t.ok(onA.every(h => h === 30000 || h === 30001), `node a's range is used (${onA.join(',')})`)
  t.equal(new Set(onA).size, onA.length, 'never twice on one node')
  t.same(pickPorts([{ container: 1, proto: 'tcp' }, { container: 2, proto: 'tcp' }], new Set(['30000/tcp']), [30000, 30001]), { ok: false, exhausted: '30000-30001/tcp' })
})

t.test('nft map output and subnets', async t => {
  t.equal(mapTarget('{"nftables": [{"map": {"elem": [[20001, {"concat": ["10.88.1.2", 80]}]]}}]}', 20001), '10.88.1.2')
  t.equal(mapTarget('{"nftables": [{"map": {"elem": [[20001, {"concat": ["10.88.1.2", 80]}]]}}]}', 20002), undefined)
  t.equal(mapTarget('not json', 1), undefined)
  t.same([...mapTargets('{"nftables": [{"metainfo": {}}, {"map": {"elem": [[20001, {"concat": ["10.88.1.2", 80]}], [53, {"concat": ["10.77.0.9", 53]}], ["x", 1]]}}]}')], [[20001, '10.88.1.2'], [53, '10.77.0.9']], 'every forward, odd elements skipped')
  t.same(subnetOf('10.88.3.1', 24), parseSubnet('10.88.3.0/24'), 'a gateway address names its subnet')
  t.throws(() => subnetOf('10.88.3.1', 33))
  t.ok(contains(parseSubnet('10.88.3.0/24'), '10.88.3.255'))
  t.notOk(contains(parseSubnet('10.88.3.0/24'), '10.88.4.0'))
  t.notOk(contains(parseSubnet('10.88.3.0/24'), '"{...}"'), 'not an address: not inside')
  t.ok(overlaps(parseSubnet('10.88.0.0/16'), parseSubnet('10.88.3.0/24')))
  t.notOk(overlaps(parseSubnet('10.88.2.0/24'), parseSubnet('10.88.3.0/24')))
  t.throws(() => parseSubnet('10.88.3.1/24'), /did you mean 10\.88\.3\.0\/24/)
  const m = (id: string, subnet: string, state: 'alive' | 'dead' = 'alive'): Parameters<typeof subnetConflict>[2][number] => ({ id, name: id, state, role: 'server', addrs: [], resources: { cpus: 1, memoryBytes: 1, gpus: [] }, labels: {}, incarnation: 0, network: { subnet, ports: [1, 2] } })
  t.match(subnetConflict('10.88.3.0/24', 'me', [m('me', '10.88.3.0/24'), m('b', '10.88.0.0/16')]), /overlaps b's \(10\.88\.0\.0\/16\)/)
  t.equal(subnetConflict('10.88.3.0/24', 'me', [m('b', '10.88.3.0/24', 'dead'), m('c', '10.88.4.0/24')]), undefined, 'dead members and other subnets do not count')
})

t.test('bad -p and stacks at the CLI: one line, exit 2', async t => {
  const noAgent = ['--api', 'http://127.0.0.1:9', '--api-token', 'x']
  for (const [p, want] of [['70000', /outside 1-65535/], ['abc', /not a port number/], ['0:80', /host port 0 is outside 1-65535/], ['99999:80', /host port 99999 is outside 1-65535/]] as const) {
    const r = await runCli([...noAgent, 'run', 'img', '-p', p], { timeoutMs: 30_000 })
    t.equal(r.code, 2, `-p ${p} exits 2`)
    t.match(r.stderr, want)
    t.equal(r.stderr.trim().split('\n').length, 1, 'in one line')
  }
  const none = await runCli([...noAgent, 'run', 'img', '--network', 'none', '-p', '80'], { timeoutMs: 30_000 })
  t.equal(none.code, 2, '--network none with -p exits 2')
  const mode = await runCli([...noAgent, 'run', 'img', '--network', 'overlay'], { timeoutMs: 30_000 })
  t.equal(mode.code, 2, 'an unknown network mode exits 2')
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const dir = await mkdtemp(join(tmpdir(), 'bolt-ports-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await writeFile(join(dir, 's.toml'), '[capsules.a]\nimage = "i"\nports = ["7777:80/udp"]\n[capsules.b]\nimage = "i"\nports = ["7777:80/udp"]\n')
  const up = await runCli([...noAgent, 'up', '-f', join(dir, 's.toml')], { timeoutMs: 30_000 })
  t.equal(up.code, 2, 'a stack with one static port twice exits 2')
  t.match(up.stderr, /both ask for host port 7777\/udp/)
  t.equal(up.stderr.trim().split('\n').length, 1, 'in one line')
})
