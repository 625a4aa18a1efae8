import t from 'tap'
import fc from 'fast-check'
import { checkHistory, checkRegister, type KvOp } from '../../scenarios/lin-check.js'

t.test('accepts linearizable and rejects non-linearizable register histories', async t => {
  const ok: KvOp[] = [
    { kind: 'put', key: 'k', call: 0, ret: 10, value: 'a', out: 'ok' },
    { kind: 'get', key: 'k', call: 5, ret: 15, out: 'a' },
    { kind: 'cas', key: 'k', call: 20, ret: 30, old: 'a', value: 'b', out: true },
    { kind: 'get', key: 'k', call: 31, ret: 40, out: 'b' }
  ]
  t.equal(checkRegister(ok), 'ok')
  const stale: KvOp[] = [
    { kind: 'put', key: 'k', call: 0, ret: 10, value: 'a', out: 'ok' },
    { kind: 'put', key: 'k', call: 11, ret: 20, value: 'b', out: 'ok' },
    { kind: 'get', key: 'k', call: 21, ret: 30, out: 'a' }
  ]
  t.equal(checkRegister(stale), 'violation', 'a stale read after a completed write is caught')
  const doubleCas: KvOp[] = [
    { kind: 'put', key: 'k', call: 0, ret: 1, value: 'x', out: 'ok' },
    { kind: 'cas', key: 'k', call: 2, ret: 10, old: 'x', value: 'y', out: true },
    { kind: 'cas', key: 'k', call: 3, ret: 11, old: 'x', value: 'z', out: true }
  ]
  t.equal(checkRegister(doubleCas), 'violation', 'two successful cas from the same old value are caught')
  const unknown: KvOp[] = [
    { kind: 'put', key: 'k', call: 0, ret: 1, value: 'x', out: 'ok' },
    { kind: 'put', key: 'k', call: 2, ret: 0, value: 'y', out: undefined },
    { kind: 'get', key: 'k', call: 50, ret: 60, out: 'y' },
    { kind: 'get', key: 'k', call: 61, ret: 70, out: 'y' }
  ]
  t.equal(checkRegister(unknown), 'ok', 'an op with unknown outcome may take effect later')
  const res = checkHistory([...ok, ...stale.map(o => ({ ...o, key: 's' }))])
  t.same(res.violations, ['s'])
})

t.test('histories from a real sequential register always pass', async t => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.constantFrom('get', 'put', 'cas'), fc.constantFrom('a', 'b', 'c')), { maxLength: 40 }), (script) => {
    let state: string | null = null
    let time = 0
    const ops: KvOp[] = script.map(([kind, v]) => {
      const call = time++
      const ret = time++
      if (kind === 'get') return { kind, key: 'k', call, ret, out: state }
      if (kind === 'put') { state = v; return { kind, key: 'k', call, ret, value: v, out: 'ok' as const } }
      const swapped = state === 'a'
      if (swapped) state = v
      return { kind: 'cas' as const, key: 'k', call, ret, old: 'a', value: v, out: swapped }
    })
    return checkRegister(ops) === 'ok'
  }), { numRuns: 300 })
  t.pass('all sequential histories accepted')
})
