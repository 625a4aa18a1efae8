// Rollouts and drains as Raft records: the table's commands, the leader's
// pure next-step judgement, and a snapshot that carries them over — so a new
// leader resumes a rollout or a drain where the last one stopped.
import t from 'tap'
import { ClusterState } from '../../agent/state/cluster-state.js'
import { CapsuleSpecSchema } from '../../agent/scheduler/spec.js'
import { nextDeploymentStep, nextDrainStep } from '../../agent/day2/rollout-driver.js'
import type { CommandInput } from '../../agent/state/cluster-state.js'

const spec = (o: Record<string, unknown>): ReturnType<typeof CapsuleSpecSchema.parse> => CapsuleSpecSchema.parse({ image: 'r/x:1', ...o })
const checked = { health: { check: { kind: 'http', port: 8080, path: '/' } } }

let n = 0
function apply (s: ClusterState, cmd: CommandInput): { ok: boolean, reason?: string } {
  n++
  return s.apply(n, ClusterState.encode({ ...cmd, req: `r${n}` } as Parameters<typeof ClusterState.encode>[0]))
}

function must (r: { ok: boolean, reason?: string }, what: string): void {
  if (!r.ok) throw new Error(`${what} refused: ${r.reason ?? ''}`)
}

/** Placed on `node` and running (healthy when checked), as the scheduler and a supervisor would make it. */
function run (s: ClusterState, instance: string, node: string, health = true): void {
  const i = s.capsules.instance(instance)!.instance
  must(apply(s, { op: 'capsule.place', instance, node, gpuIndexes: [], ports: [], generation: i.generation }), `place ${instance}`)
  const g = s.capsules.instance(instance)!.instance.generation
  must(apply(s, { op: 'capsule.report', instance, node, generation: g, state: 'running', exitCode: null, reason: null, restarts: i.restarts }), `report ${instance}`)
  if (health && s.capsules.instance(instance)!.capsule.spec.health !== undefined) {
    must(apply(s, { op: 'instance.health', node, updates: [{ instance, generation: g, health: 'healthy' }] }), `health of ${instance}`)
  }
}

/** Applies the driver's next steps until it waits; returns the ops issued. */
function drive (s: ClusterState, now: number): string[] {
  const ops: string[] = []
  for (let k = 0; k < 20; k++) {
    const { deployments, drains } = s.rollouts.running()
    const steps = [...deployments.map(d => nextDeploymentStep(d, s.capsules, now)), ...drains.map(d => nextDrainStep(d, s.capsules, now))].filter(x => x !== undefined)
    if (steps.length === 0) break
    for (const c of steps) { ops.push(c.op); apply(s, c) }
  }
  return ops
}

t.test('a rollout replaces one instance at a time, each healthy before the next', async t => {
  const s = new ClusterState()
  apply(s, { op: 'capsule.create', spec: spec({ name: 'web', replicas: 3, args: ['v1'], ...checked }) })
  for (const i of ['web-0', 'web-1', 'web-2']) run(s, i, 'n1')
  t.ok(apply(s, { op: 'deployment.start', spec: spec({ name: 'web', replicas: 3, args: ['v2'], ...checked }), timeoutMs: 60_000 }).ok)
  t.same(s.capsules.get('web')!.spec.args, ['v2'], 'the new spec is the capsule\'s at once')
  t.same(drive(s, 1000), ['deployment.step'], 'one restart, then it waits')
  t.match(s.capsules.instance('web-0')!.instance, { node: null, state: 'pending' })
  t.equal(s.capsules.instance('web-1')!.instance.state, 'running', 'the others keep running')

  // The leader changes: a new state restored from a snapshot carries the record on.
  const s2 = new ClusterState()
  s2.restore(s.snapshot())
  t.match(s2.rollouts.deployment('web'), { status: 'running', pending: ['web-1', 'web-2'], current: { instance: 'web-0' } })
  run(s2, 'web-0', 'n2', false)
  t.same(drive(s2, 1000), [], 'running but not yet healthy: waits')
  apply(s2, { op: 'instance.health', node: 'n2', updates: [{ instance: 'web-0', generation: s2.capsules.instance('web-0')!.instance.generation, health: 'healthy' }] })
  t.same(drive(s2, 1000), ['deployment.replaced', 'deployment.step'])
  run(s2, 'web-1', 'n2')
  t.same(drive(s2, 1000), ['deployment.replaced', 'deployment.step'])
  run(s2, 'web-2', 'n2')
  t.same(drive(s2, 1000), ['deployment.replaced', 'deployment.finish'])
  t.match(s2.rollouts.deployment('web'), { status: 'succeeded', replaced: ['web-0', 'web-1', 'web-2'], pending: [] })
  t.same(drive(s2, 1000), [], 'nothing more to do')
})

t.test('a crash of the new version stops the rollout and puts the previous spec back', async t => {
  const s = new ClusterState()
  apply(s, { op: 'capsule.create', spec: spec({ name: 'web', replicas: 3, args: ['v1'], ...checked }) })
  for (const i of ['web-0', 'web-1', 'web-2']) run(s, i, 'n1')
  apply(s, { op: 'deployment.start', spec: spec({ name: 'web', replicas: 3, args: ['broken'], ...checked }), timeoutMs: 60_000 })
  drive(s, 1000)
  const i = s.capsules.instance('web-0')!.instance
  apply(s, { op: 'capsule.place', instance: 'web-0', node: 'n1', gpuIndexes: [], ports: [], generation: i.generation })
  apply(s, { op: 'capsule.report', instance: 'web-0', node: 'n1', generation: i.generation, state: 'pending', exitCode: 3, reason: 'exited; restarting', restarts: i.restarts + 1 })
  t.same(drive(s, 1000), ['deployment.finish'])
  const d = s.rollouts.deployment('web')!
  t.equal(d.status, 'failed')
  t.match(d.reason, /^web-0 crashed after the update \(exit code 3\); web-1, web-2 still run the previous version; the spec is back to the previous one$/)
  t.same(s.capsules.get('web')!.spec.args, ['v1'], 'the previous spec is back')
  t.match(s.capsules.instance('web-0')!.instance, { node: null, state: 'pending' }, 'the failed instance is placed again, with it')
  t.equal(s.capsules.instance('web-1')!.instance.health, 'healthy', 'the old ones still serve')
})

t.test('a replacement that is not healthy by its deadline fails the rollout', async t => {
  const s = new ClusterState()
  apply(s, { op: 'capsule.create', spec: spec({ name: 'web', replicas: 1, ...checked }) })
  run(s, 'web', 'n1')
  apply(s, { op: 'deployment.start', spec: spec({ name: 'web', replicas: 1, args: ['v2'], ...checked }), timeoutMs: 5000 })
  drive(s, 1000)
  run(s, 'web', 'n1', false)
  t.same(drive(s, 5999), [], 'before the deadline it waits')
  t.same(drive(s, 6001), ['deployment.finish'])
  t.match(s.rollouts.deployment('web')!.reason, /web was not healthy within 5000 ms \(running\/starting\); no other instance/)
})

t.test('a drain moves every instance, finishes once they run elsewhere, and releases at its deadline', async t => {
  const s = new ClusterState()
  apply(s, { op: 'capsule.create', spec: spec({ name: 'a', ...checked }) })
  apply(s, { op: 'capsule.create', spec: spec({ name: 'b', ...checked }) })
  run(s, 'a', 'n1')
  run(s, 'b', 'n1')
  t.ok(apply(s, { op: 'drain.start', node: 'n1', deadline: 10_000 }).ok)
  t.notOk(s.capsules.isEligible('n1'), 'ineligible')
  t.match(s.rollouts.drain('n1'), { status: 'running', moving: ['a', 'b'] })
  t.match(s.capsules.instance('a')!.instance, { node: null, previous: { node: 'n1' } }, 'moving, the old run kept')
  run(s, 'a', 'n2')
  t.same(drive(s, 5000), [], 'b has not moved yet')
  const s2 = new ClusterState()
  s2.restore(s.snapshot())
  t.same(drive(s2, 10_000), ['drain.finish'], 'a new leader releases at the recorded deadline')
  t.match(s2.rollouts.drain('n1'), { status: 'done', released: ['b'] })
  t.equal(s2.capsules.instance('b')!.instance.previous, null)

  run(s, 'b', 'n2')
  t.same(drive(s, 5000), ['drain.finish'], 'everything moved: done before the deadline')
  t.match(s.rollouts.drain('n1'), { status: 'done', released: [] })
})

t.test('only the leader issues the driver\'s steps', async t => {
  const { admitCommand } = await import('../../agent/state/commands.js')
  const ctx = { from: 'other', leader: 'lead', state: { capsules: { instance: () => undefined } } }
  const step = ClusterState.encode({ op: 'deployment.step', req: 'x', capsule: 'web', id: 'i', instance: 'web-0', deadline: 1 })
  t.throws(() => admitCommand(step, ctx), { name: 'CommandRefusedError' })
  t.doesNotThrow(() => admitCommand(ClusterState.encode({ op: 'drain.start', req: 'y', node: 'n1', deadline: 1 }), ctx))
})
