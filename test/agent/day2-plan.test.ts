// Units of day-two operations: the capsule table's restart, scale and
// update commands, and the plan `up` prints for an edited stack.
import t from 'tap'
import { CapsuleTable } from '../../agent/state/capsules.js'
import { CapsuleSpecSchema } from '../../agent/scheduler/spec.js'
import { planStack, replacesInstances, STACK_LABEL } from '../../agent/day2/stack-plan.js'

const spec = (o: Record<string, unknown>): ReturnType<typeof CapsuleSpecSchema.parse> => CapsuleSpecSchema.parse({ image: 'r/x:1', ...o })

t.test('restart, scale and update in the capsule table', async t => {
  const tab = new CapsuleTable()
  t.ok(tab.apply({ op: 'capsule.create', req: '1', spec: spec({ name: 'web', replicas: 2 }) }).ok)
  t.ok(tab.apply({ op: 'capsule.place', req: '2', instance: 'web-0', node: 'n1', gpuIndexes: [], ports: [], generation: 0 }).ok)
  t.ok(tab.apply({ op: 'capsule.report', req: '3', instance: 'web-0', node: 'n1', generation: 1, state: 'exited', exitCode: 0, reason: null, restarts: 0 }).ok)
  tab.apply({ op: 'capsule.stop', req: '4', name: 'web' })
  t.ok(tab.apply({ op: 'capsule.restart', req: '5', name: 'web', instances: ['web-0'] }).ok)
  const w0 = tab.instance('web-0')!
  t.equal(w0.capsule.desired, 'run', 'a stopped capsule runs again')
  t.match(w0.instance, { node: null, state: 'pending', generation: 1 }, 'unplaced, generation kept for the next placement')
  t.notOk(tab.apply({ op: 'capsule.restart', req: '6', name: 'web', instances: ['web-9'] }).ok, 'an unknown instance is refused')
  t.notOk(tab.apply({ op: 'capsule.restart', req: '7', name: 'nope' }).ok)

  t.ok(tab.apply({ op: 'capsule.scale', req: '8', name: 'web', replicas: 4 }).ok)
  t.same(tab.get('web')!.instances.map(i => i.name), ['web-0', 'web-1', 'web-2', 'web-3'])
  t.equal(tab.get('web')!.spec.replicas, 4, 'the spec follows')
  t.ok(tab.apply({ op: 'capsule.scale', req: '9', name: 'web', replicas: 1 }).ok)
  t.same(tab.get('web')!.instances.map(i => i.name), ['web-0'], 'the highest-numbered go first')
  t.equal(tab.instance('web-2'), undefined, 'and are forgotten')

  t.ok(tab.apply({ op: 'capsule.create', req: '10', spec: spec({ name: 'one' }) }).ok)
  t.ok(tab.apply({ op: 'capsule.create', req: '11', spec: spec({ name: 'one-1' }) }).ok)
  t.notOk(tab.apply({ op: 'capsule.scale', req: '12', name: 'one', replicas: 2 }).ok, 'a name taken by another capsule is refused')
  t.same(tab.get('one')!.instances.map(i => i.name), ['one'], 'and nothing changes')

  t.ok(tab.apply({ op: 'capsule.update', req: '13', spec: spec({ name: 'web', replicas: 2, args: ['v2'] }) }).ok)
  t.same(tab.get('web')!.spec.args, ['v2'])
  t.equal(tab.get('web')!.instances.length, 2)
  t.notOk(tab.apply({ op: 'capsule.update', req: '14', spec: spec({ name: 'ghost' }) }).ok)
})

t.test('the plan of an edited stack', async t => {
  const lab = { [STACK_LABEL]: 's' }
  const tab = new CapsuleTable()
  for (const s of [spec({ name: 'db', labels: lab }), spec({ name: 'web', replicas: 3, args: ['v1'], labels: lab }), spec({ name: 'old', labels: lab }), spec({ name: 'other' })]) tab.apply({ op: 'capsule.create', req: s.name, spec: s })
  const p = planStack('s', tab.list(), [spec({ name: 'db', labels: lab }), spec({ name: 'web', replicas: 5, args: ['v2'], labels: lab }), spec({ name: 'api', labels: lab })])
  t.same(p.added, ['api'])
  t.same(p.changed, [{ name: 'web', fields: ['args', 'replicas'], replicas: { from: 3, to: 5 } }])
  t.same(p.removed, ['old'], 'only capsules of this stack are removed')
  t.same(p.unchanged, ['db'])
  t.ok(replacesInstances(['args', 'replicas']))
  t.notOk(replacesInstances(['replicas']), 'a scale replaces nothing')
  const same = planStack('s', tab.list(), [CapsuleSpecSchema.parse({ labels: lab, name: 'db', image: 'r/x:1', env: {} })])
  t.same(same.unchanged, ['db'], 'key order and defaults do not make a change')
})

t.test('drain: migrate keeps the previous placement until the new one is healthy', async t => {
  const tab = new CapsuleTable()
  tab.apply({ op: 'capsule.create', req: '1', spec: spec({ name: 'h', health: { check: { kind: 'exec', command: 'true' } } }) })
  tab.apply({ op: 'capsule.place', req: '2', instance: 'h', node: 'n1', gpuIndexes: [], ports: [], generation: 0 })
  tab.apply({ op: 'capsule.report', req: '3', instance: 'h', node: 'n1', generation: 1, state: 'running', exitCode: null, reason: null, restarts: 0 })
  t.notOk(tab.apply({ op: 'capsule.migrate', req: '4', instance: 'h', generation: 0 }).ok, 'a stale generation is refused')
  t.ok(tab.apply({ op: 'capsule.migrate', req: '5', instance: 'h', generation: 1 }).ok)
  t.match(tab.instance('h')!.instance, { node: null, state: 'pending', previous: { node: 'n1', generation: 1 } })
  tab.apply({ op: 'capsule.place', req: '6', instance: 'h', node: 'n2', gpuIndexes: [], ports: [], generation: 1 })
  tab.apply({ op: 'capsule.report', req: '7', instance: 'h', node: 'n2', generation: 2, state: 'running', exitCode: null, reason: null, restarts: 0 })
  t.equal(tab.instance('h')!.instance.previous?.node, 'n1', 'running but not yet healthy: the old run stays')
  tab.apply({ op: 'instance.health', req: '8', node: 'n2', updates: [{ instance: 'h', generation: 2, health: 'healthy' }] })
  t.equal(tab.instance('h')!.instance.previous, null, 'healthy: the old run is let go')
  t.notOk(tab.apply({ op: 'capsule.release', req: '9', instance: 'h' }).ok, 'nothing left to release')

  t.ok(tab.isEligible('n1'))
  tab.apply({ op: 'node.eligibility', req: '10', id: 'n1', eligible: false, reason: 'drained' })
  t.notOk(tab.isEligible('n1'))
  t.same(tab.ineligibleNodes(), [['n1', 'drained']])
  tab.apply({ op: 'node.eligibility', req: '11', id: 'n1', eligible: true, reason: '' })
  t.ok(tab.isEligible('n1'))
})

t.test('fuzz: join addresses and the saved flags file', async t => {
  const fc = (await import('fast-check')).default
  const { joinAddrs } = await import('../../agent/join.js')
  const { loadSavedFlags, mergeFlags, saveFlags, FLAGS_FILE } = await import('../../agent/day2/saved-flags.js')
  const { mkdtemp, rm, writeFile } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  fc.assert(fc.property(fc.string({ maxLength: 80 }), s => { const r = joinAddrs(s); return r.length >= 1 && r.length <= 2 }))
  const dir = await mkdtemp(join(tmpdir(), 'bolt-flags-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await fc.assert(fc.asyncProperty(fc.oneof(fc.string({ maxLength: 200 }), fc.json({ maxDepth: 3 })), async text => {
    await writeFile(join(dir, FLAGS_FILE), text)
    try { await loadSavedFlags(dir); return true } catch (err) { return /is damaged/.test((err as Error).message) }
  }), { numRuns: 200 })
  await saveFlags(dir, { labels: { zone: 'eu' }, name: 'n1', log_level: 'debug', listen: undefined })
  t.same(await loadSavedFlags(dir), { labels: { zone: 'eu' }, name: 'n1' }, 'only the flags given, and only those worth keeping')
  t.same(mergeFlags({ labels: { zone: 'eu' }, name: 'n1' }, { labels: { zone: 'us' }, name: undefined }), { labels: { zone: 'us' }, name: 'n1' }, 'a flag given to start wins')
})
