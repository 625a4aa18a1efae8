// A linearizability checker for histories of a key-value register (get, put,
// cas), in the style of Wing & Gong with Lowe's memoization (as Porcupine
// does): the history is split per key (P-compositionality), then a depth-
// first search tries to order the operations so each takes effect between
// its call and its return and the register's answers match. Operations whose
// outcome is unknown (a timeout, a killed server) may take effect at any
// time after their call, or never.

export type KvOp =
  | { kind: 'get', key: string, call: number, ret: number, out: string | null | undefined }
  | { kind: 'put', key: string, call: number, ret: number, value: string, out: 'ok' | undefined }
  | { kind: 'cas', key: string, call: number, ret: number, old: string | null, value: string, out: boolean | undefined }

/** An operation with `out === undefined` has an unknown outcome; its `ret` is ignored. */
export interface CheckResult {
  ok: boolean
  keys: number
  operations: number
  /** Keys whose history could not be linearized. */
  violations: string[]
  /** Keys whose search was cut off by the step budget (neither proven nor refuted). */
  undecided: string[]
}

const MAX_STEPS_PER_KEY = 2_000_000

export function checkHistory (history: KvOp[]): CheckResult {
  const byKey = new Map<string, KvOp[]>()
  for (const op of history) {
    const list = byKey.get(op.key) ?? []
    list.push(op)
    byKey.set(op.key, list)
  }
  const violations: string[] = []
  const undecided: string[] = []
  for (const [key, ops] of byKey) {
    const r = checkRegister(ops)
    if (r === 'violation') violations.push(key)
    if (r === 'undecided') undecided.push(key)
  }
  return { ok: violations.length === 0 && undecided.length === 0, keys: byKey.size, operations: history.length, violations, undecided }
}

/** Applies op to the register; returns the next value, or null when its observed output is impossible here. */
function step (state: string | null, op: KvOp): { next: string | null } | null {
  switch (op.kind) {
    case 'get':
      if (op.out === undefined) return { next: state }
      return op.out === state ? { next: state } : null
    case 'put':
      return { next: op.value }
    case 'cas': {
      const matches = state === op.old
      if (op.out === undefined) return { next: matches ? op.value : state }
      if (op.out !== matches) return null
      return { next: matches ? op.value : state }
    }
  }
}

export function checkRegister (opsIn: KvOp[]): 'ok' | 'violation' | 'undecided' {
  const ops = [...opsIn].sort((a, b) => a.call - b.call)
  const n = ops.length
  const INF = Number.POSITIVE_INFINITY
  const ret = ops.map(o => o.out === undefined ? INF : o.ret)
  const required = ops.map(o => o.out !== undefined)
  const requiredCount = required.filter(Boolean).length
  const done = new Uint8Array(n)
  const seen = new Set<string>()
  let steps = 0

  const key = (state: string | null): string => {
    let bits = ''
    for (let i = 0; i < n; i++) bits += done[i] === 1 ? '1' : '0'
    return bits + '|' + (state === null ? '\u0000' : state)
  }

  const search = (state: string | null, linearizedRequired: number): boolean | 'cut' => {
    if (linearizedRequired === requiredCount) return true
    if (++steps > MAX_STEPS_PER_KEY) return 'cut'
    const k = key(state)
    if (seen.has(k)) return false
    seen.add(k)
    // An op may go next only if it was called before every pending op returned.
    let minRet = INF
    for (let i = 0; i < n; i++) if (done[i] === 0 && ret[i]! < minRet) minRet = ret[i]!
    for (let i = 0; i < n; i++) {
      if (done[i] === 1) continue
      const op = ops[i]!
      if (op.call > minRet) break
      const r = step(state, op)
      if (r === null) continue
      done[i] = 1
      const res = search(r.next, linearizedRequired + (required[i] === true ? 1 : 0))
      done[i] = 0
      if (res !== false) return res
    }
    return false
  }
  const res = search(null, 0)
  if (res === 'cut') return 'undecided'
  return res ? 'ok' : 'violation'
}
