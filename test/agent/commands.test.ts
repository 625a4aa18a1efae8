// The Raft command registry: the guarded decoder fuzzed (a typed error or a
// valid command, never a throw out of apply, never a hang), the size bounds,
// unknown commands, and the rule table the leader applies to forwarded ones.
import t from 'tap'
import fc from 'fast-check'
import { encode } from 'cbor-x'
import { admitCommand, COMMANDS, CommandDecodeError, decodeCommand, encodeCommand, MAX_COMMAND_BYTES, type Command, type IssuerContext } from '../../agent/state/commands.js'
import { ClusterState } from '../../agent/state/cluster-state.js'
import { CapsuleSpecSchema } from '../../agent/scheduler/spec.js'

const KNOWN = new Set(['CommandDecodeError', 'UnknownCommandError', 'CommandTooLargeError'])

/** Commands of every registered kind, valid by construction. */
const validCommand: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ op: fc.constant('put' as const), req: fc.string({ maxLength: 24 }), key: fc.string({ minLength: 1, maxLength: 40 }), value: fc.string({ maxLength: 200 }) }),
  fc.record({ op: fc.constant('cas' as const), req: fc.string({ maxLength: 24 }), key: fc.string({ minLength: 1, maxLength: 40 }), old: fc.option(fc.string({ maxLength: 50 })), value: fc.string({ maxLength: 50 }) }),
  fc.record({ op: fc.constant('delete' as const), req: fc.string({ maxLength: 24 }), key: fc.string({ minLength: 1, maxLength: 40 }) }),
  fc.record({ op: fc.constant('noop' as const), req: fc.string({ maxLength: 24 }) }),
  fc.record({ op: fc.constant('capsule.report' as const), req: fc.string({ maxLength: 24 }), instance: fc.string({ maxLength: 20 }), node: fc.string({ maxLength: 20 }), generation: fc.nat(), state: fc.constantFrom('pending' as const, 'running' as const, 'exited' as const), exitCode: fc.option(fc.integer()), reason: fc.option(fc.string({ maxLength: 40 })), restarts: fc.nat() }),
  fc.record({ op: fc.constant('capsule.stop' as const), req: fc.string({ maxLength: 24 }), name: fc.string({ maxLength: 40 }) })
)

/** Maps that look like commands but may break any rule of their schema. */
const nearCommand = fc.record({
  op: fc.oneof(fc.constantFrom(...Object.keys(COMMANDS), 'service.register', '__proto__', 'constructor', 'toString'), fc.string(), fc.integer()),
  req: fc.oneof(fc.string({ maxLength: 80 }), fc.integer(), fc.constant(null)),
  key: fc.oneof(fc.string({ maxLength: 600 }), fc.constant(undefined)),
  value: fc.anything({ maxDepth: 3 }),
  spec: fc.anything({ maxDepth: 4 }),
  node: fc.anything({ maxDepth: 1 })
}, { requiredKeys: ['op'] })

/** One of: arbitrary bytes, CBOR of an arbitrary value, a near-command, a valid command with bytes flipped or cut. */
const entryBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 600 }),
  fc.anything({ maxDepth: 4 }).map(v => encode(v) as Uint8Array),
  nearCommand.map(v => encode(v) as Uint8Array),
  fc.tuple(validCommand, fc.nat(), fc.integer({ min: 1, max: 255 })).map(([c, at, x]) => {
    const b = Uint8Array.from(encodeCommand(c))
    b[at % b.length] = (b[at % b.length] as number) ^ x
    return b
  }),
  fc.tuple(validCommand, fc.nat()).map(([c, cut]) => { const b = encodeCommand(c); return b.subarray(0, cut % b.length) })
)

t.test('fuzz: decodeCommand gives a registered command or a typed error, whatever the bytes', async t => {
  fc.assert(fc.property(entryBytes, bytes => {
    try {
      const cmd = decodeCommand(bytes)
      return Object.hasOwn(COMMANDS, cmd.op)
    } catch (err) {
      return err instanceof CommandDecodeError && KNOWN.has(err.name)
    }
  }), { numRuns: 3000 })
  t.pass('3000 inputs: no untyped throw')
})

t.test('fuzz: apply never throws; a skipped entry is reported and leaves the replica applying the next', async t => {
  fc.assert(fc.property(fc.array(entryBytes, { maxLength: 8 }), validCommand, (garbage, good) => {
    const skipped: number[] = []
    const s = new ClusterState({ onSkip: (i) => { skipped.push(i) } })
    let i = 0
    for (const g of garbage) {
      const r = s.apply(++i, g)
      if (!r.ok && r.reason === 'undecodable command' && !skipped.includes(i)) return false
    }
    const last = ++i
    s.apply(last, encodeCommand({ ...good, req: 'fresh-request-id' }))
    return s.appliedIndex === last && !skipped.includes(last)
  }), { numRuns: 500 })
  t.pass('apply took every sequence and the valid command after it')
})

t.test('the pathological entries: a 2^32-item header, indefinite lengths, deep nesting, tags', async t => {
  const huge = new Uint8Array(500)
  huge.set([0x9b, 0, 0, 0, 1, 0, 0, 0, 0])
  const deep = new Uint8Array(200).fill(0x81)
  const cases: Array<[string, Uint8Array]> = [
    ['array header claiming 2^32 items', huge],
    ['indefinite array', new Uint8Array([0x9f])],
    ['indefinite map', new Uint8Array([0xbf, 0x61, 0x61])],
    ['200 nested arrays', deep],
    ['a date tag', encode(new Date(0)) as Uint8Array]
  ]
  for (const [what, bytes] of cases) {
    const skipped: Error[] = []
    const s = new ClusterState({ onSkip: (_i, e) => { skipped.push(e) } })
    t.same(s.apply(1, bytes), { ok: false, reason: 'undecodable command' }, `${what}: skipped`)
    t.equal(skipped[0]?.name, 'CommandDecodeError', `${what}: reported as CommandDecodeError`)
  }
})

t.test('unknown commands and oversized ones are refused with their own error', async t => {
  t.throws(() => decodeCommand(encode({ op: 'service.register', req: 'r', name: 'x' }) as Uint8Array), { name: 'UnknownCommandError' })
  t.throws(() => decodeCommand(encode({ op: '__proto__', req: 'r' }) as Uint8Array), { name: 'UnknownCommandError' })
  t.throws(() => decodeCommand(new Uint8Array(MAX_COMMAND_BYTES + 1)), { name: 'CommandTooLargeError' })
  // Under the global bound but over the command's own: a noop padded with an unknown field.
  const fat = encode({ op: 'noop', req: 'r', pad: 'x'.repeat(64 * 1024) }) as Uint8Array
  t.throws(() => decodeCommand(fat), { name: 'CommandTooLargeError' }, 'each command has its own size bound')
  t.throws(() => encodeCommand({ op: 'put', req: 'r', key: 'k', value: 'x'.repeat(70 * 1024) }), { name: 'CommandDecodeError' }, 'a value over MAX_VALUE_BYTES')
})

t.test('the rule table: who may issue what', async t => {
  const leader = 'L'
  const state = new ClusterState()
  const ctx = (from: string): IssuerContext => ({ from, leader, state })
  const bytes = (c: Command): Uint8Array => encodeCommand(c)
  const anyone: Command[] = [
    { op: 'put', req: 'a', key: 'k', value: 'v' },
    { op: 'cas', req: 'b', key: 'k', old: null, value: 'v' },
    { op: 'delete', req: 'c', key: 'k' },
    { op: 'noop', req: 'd' },
    { op: 'capsule.stop', req: 'e', name: 'web' },
    { op: 'capsule.remove', req: 'f', name: 'web' },
    { op: 'capsule.create', req: 'g', spec: CapsuleSpecSchema.parse({ name: 'web', image: 'busybox' }) }
  ]
  for (const c of anyone) t.equal(admitCommand(bytes(c), ctx('M')).op, c.op, `${c.op}: any member`)
  const leaderOnly: Command[] = [
    { op: 'capsule.place', req: 'h', instance: 'web', node: 'M', gpuIndexes: [], generation: 0 },
    { op: 'capsule.unplace', req: 'i', instance: 'web', generation: 1, state: 'lost', reason: 'x' },
    { op: 'capsule.pending', req: 'j', instance: 'web', reason: 'x' },
    { op: 'role', req: 'k', id: 'M', role: 'server' }
  ]
  for (const c of leaderOnly) {
    t.throws(() => admitCommand(bytes(c), ctx('M')), { name: 'CommandRefusedError' }, `${c.op}: refused from a member`)
    t.equal(admitCommand(bytes(c), ctx(leader)).op, c.op, `${c.op}: the leader's own`)
  }
  const report: Command = { op: 'capsule.report', req: 'l', instance: 'web', node: 'M', generation: 1, state: 'running', exitCode: null, reason: null, restarts: 0 }
  t.equal(admitCommand(bytes(report), ctx('M')).op, 'capsule.report', 'a node reports for itself')
  t.throws(() => admitCommand(bytes(report), ctx('N')), { name: 'CommandRefusedError', message: /only its own instances/ }, 'and not for another node')
})
