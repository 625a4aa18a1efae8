// The start path reacts to events, not timers (issue 25, run-vs-containerd):
// a submit waiting for placement is answered by the apply that places it,
// a kick that arrives during a scheduler round gets a round of its own, and
// the supervisor starts a placed instance while its previous sweep still
// runs, recording each step of the start.
import t from 'tap'
import { pino } from 'pino'
import { CapsuleTable } from '../../agent/state/capsules.js'
import { CapsuleSpecSchema } from '../../agent/scheduler/spec.js'
import { placementOf, waitForPlacement } from '../../agent/scheduler/placement-wait.js'
import { WAITING_FOR_SCHEDULER } from '../../agent/state/instance-reasons.js'
import { Scheduler, type SchedulerNode } from '../../agent/scheduler/scheduler.js'
import { Supervisor } from '../../agent/supervisor/supervisor.js'
import { START_STEPS } from '../../agent/supervisor/start-trace.js'
import type { CommandInput, CommandResult } from '../../agent/state/cluster-state.js'
import type { NodeRuntime } from '../../native/index.js'

type Listener = (cmd: { op: string }) => void

/** A capsule table with apply listeners, as the Raft state machine calls them. */
function state (): { table: CapsuleTable, apply: (cmd: CommandInput) => CommandResult, onApply: (l: Listener) => () => void, listeners: Set<Listener> } {
  const table = new CapsuleTable()
  const listeners = new Set<Listener>()
  return {
    table,
    listeners,
    apply: (cmd) => {
      const r = table.apply({ ...cmd, req: 'r' } as Parameters<CapsuleTable['apply']>[0])
      for (const l of listeners) l(cmd)
      return r
    },
    onApply: (l) => { listeners.add(l); return () => { listeners.delete(l) } }
  }
}

const log = pino({ level: 'silent' })

t.test('a submit waiting for placement is answered by the apply that places it', async t => {
  const s = state()
  s.apply({ op: 'capsule.create', spec: CapsuleSpecSchema.parse({ name: 'web', image: 'x', replicas: 2 }) })
  const waiting = waitForPlacement({ get: (n) => s.table.get(n), onApply: s.onApply }, 'web', 60_000)
  s.apply({ op: 'capsule.place', instance: 'web-0', node: 'a', gpuIndexes: [], ports: [], generation: 0 })
  s.apply({ op: 'capsule.pending', instance: 'web-1', reason: 'no node has 2 CPUs free' })
  const rec = await waiting
  t.same(placementOf(rec!), { placed: 1, pending: [{ instance: 'web-1', reason: 'no node has 2 CPUs free' }], verdict: true }, 'placed one, the verdict on the other')
  t.equal(s.listeners.size, 0, 'the wait unsubscribed')
  const gone = waitForPlacement({ get: (n) => s.table.get(n), onApply: s.onApply }, 'nope', 60_000)
  t.equal(await gone, undefined, 'no such capsule: answered at once')
  s.apply({ op: 'capsule.create', spec: CapsuleSpecSchema.parse({ name: 'late', image: 'x' }) })
  const ac = new AbortController()
  const aborted = waitForPlacement({ get: (n) => s.table.get(n), onApply: s.onApply }, 'late', 60_000, ac.signal)
  ac.abort()
  t.equal(placementOf((await aborted)!).pending.length, 1, 'a client that leaves ends the wait with the record as it stands')
  t.equal(s.listeners.size, 0, 'and unsubscribes')
})

t.test('a kick during a scheduler round gets a round of its own', async t => {
  const s = state()
  let release!: () => void
  const blocked = new Promise<void>(resolve => { release = resolve })
  let writes = 0
  const sched = new Scheduler({
    isLeader: () => true,
    capsules: () => s.table,
    nodes: () => [{ id: 'a', state: 'alive', cpus: 8, memoryBytes: 64 * 1024 ** 3, gpus: [], labels: {} }],
    write: async (cmd) => {
      writes++
      if (writes === 1) await blocked
      return s.apply(cmd)
    },
    deadGraceMs: 60_000,
    log
  })
  t.teardown(() => { sched.stop() })
  s.apply({ op: 'capsule.create', spec: CapsuleSpecSchema.parse({ name: 'one', image: 'x' }) })
  const first = sched.round()
  // Submitted while the first round waits on its write: no timer runs (start() was not called), only the kick.
  s.apply({ op: 'capsule.create', spec: CapsuleSpecSchema.parse({ name: 'two', image: 'x' }) })
  sched.kick()
  release()
  await first
  const placed = await new Promise<boolean>(resolve => {
    const check = (): void => { if (s.table.get('two')?.instances[0]?.node === 'a') resolve(true); else setImmediate(check) }
    check()
  })
  t.ok(placed, 'the second capsule is placed by the round the kick asked for')
})

t.test('the supervisor starts a placed instance at once and traces its steps', async t => {
  const s = state()
  let listCalls = 0
  let releaseList!: () => void
  const listBlocked = new Promise<void>(resolve => { releaseList = resolve })
  let started!: () => void
  const ran = new Promise<void>(resolve => { started = resolve })
  const runtime = {
    state: async () => { const e = new Error('no such capsule'); e.name = 'CapsuleNotFoundError'; throw e },
    // The first sweep's list hangs: a start must not wait behind it.
    list: async () => { listCalls++; if (listCalls === 1) await listBlocked; return [] },
    run: async (_spec: unknown, hooks?: { onStep?: (s: string) => void }) => {
      for (const step of ['bundleReady', 'launched', 'started']) hooks?.onStep?.(step)
      started()
      return { name: 'x', exited: new Promise(() => undefined) }
    },
    wait: async () => await new Promise(() => undefined),
    stop: async () => ({ exitCode: 0, reason: 'stopped', oomKilled: false, finishedAt: 0 })
  } as unknown as NodeRuntime
  const write = async (cmd: CommandInput): Promise<CommandResult> => s.apply(cmd)
  const sup = new Supervisor({ self: 'me', capsules: () => s.table, write, runtime, images: { prepare: async () => 'img' }, log })
  s.onApply((cmd) => { sup.applied(cmd as CommandInput, true) })
  t.teardown(async () => { releaseList(); await sup.stop() })
  sup.start()
  s.apply({ op: 'capsule.create', spec: CapsuleSpecSchema.parse({ name: 'fast', image: 'x', network: 'none' }) })
  s.apply({ op: 'capsule.place', instance: 'fast', node: 'me', gpuIndexes: [], ports: [], generation: 0 })
  await ran
  await new Promise<void>(resolve => {
    const check = (): void => { if (s.table.get('fast')?.instances[0]?.state === 'running') resolve(); else setImmediate(check) }
    check()
  })
  const trace = sup.trace.get('fast', 1)
  t.ok(trace !== undefined, 'the start is traced')
  const steps = START_STEPS.filter(k => trace?.[k] !== undefined)
  t.same(steps, START_STEPS.filter(k => k !== 'reported' || trace?.reported !== undefined), `every step up to running is recorded (${steps.join(', ')})`)
  const times = steps.map(k => trace![k]!)
  t.same(times, [...times].sort((a, b) => a - b), 'in order')
  t.equal(listCalls, 1, 'the start did not wait for the sweep that was listing')
})

t.test('an instance that fits only on a suspect node waits for it, with no verdict', async t => {
  const s = state()
  const node: SchedulerNode = { id: 'a', state: 'suspect', cpus: 8, memoryBytes: 64 * 1024 ** 3, gpus: [], labels: {} }
  const sched = new Scheduler({ isLeader: () => true, capsules: () => s.table, nodes: () => [node], write: async (cmd) => s.apply(cmd), deadGraceMs: 60_000, log })
  t.teardown(() => { sched.stop() })
  s.apply({ op: 'capsule.create', spec: CapsuleSpecSchema.parse({ name: 'web', image: 'x' }) })
  const waiting = waitForPlacement({ get: (n) => s.table.get(n), onApply: s.onApply }, 'web', 60_000)
  await sched.round()
  t.same(placementOf(s.table.get('web')!), { placed: 0, pending: [{ instance: 'web', reason: WAITING_FOR_SCHEDULER }], verdict: false }, 'not placed on a suspect node, and no verdict that would end run\'s wait')
  node.state = 'alive'
  await sched.round()
  t.equal((await waiting)?.instances[0]?.node, 'a', 'placed once the node is alive again, answering the wait')
  node.state = 'dead'
  s.apply({ op: 'capsule.create', spec: CapsuleSpecSchema.parse({ name: 'late', image: 'x' }) })
  await sched.round()
  t.match(placementOf(s.table.get('late')!), { placed: 0, verdict: true, pending: [{ reason: /no alive node/ }] }, 'a dead node: the verdict as before')
})
