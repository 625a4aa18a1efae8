// Defence in depth behind the scheduler (security issue #21, finding 3): a
// node whose config does not allow host networking refuses a capsule placed
// on it that asks for it, with the reason, and starts nothing. A unit test
// with a stand-in runtime; test/agent/capsule-policy.test.ts shows the
// scheduler's side with real agents.
import t from 'tap'
import { pino } from 'pino'
import { CapsuleTable } from '../../agent/state/capsules.js'
import { CapsuleSpecSchema } from '../../agent/scheduler/spec.js'
import { Supervisor, runtimeNetwork } from '../../agent/supervisor/supervisor.js'
import type { CommandInput, CommandResult } from '../../agent/state/cluster-state.js'
import type { NodeRuntime } from '../../native/index.js'

t.test('a node that does not allow host networking refuses such a capsule', async t => {
  const table = new CapsuleTable()
  const reports: Array<{ state: string, reason: string | null }> = []
  let reported!: () => void
  const failed = new Promise<void>(resolve => { reported = resolve })
  const write = async (cmd: CommandInput): Promise<CommandResult> => {
    if (cmd.op === 'capsule.report') { reports.push({ state: cmd.state, reason: cmd.reason }); if (cmd.state === 'failed') reported() }
    return table.apply({ ...cmd, req: 'r' } as Parameters<CapsuleTable['apply']>[0])
  }
  table.apply({ op: 'capsule.create', req: 'r1', spec: CapsuleSpecSchema.parse({ name: 'hostnet', image: 'x', network: 'host' }) })
  table.apply({ op: 'capsule.place', req: 'r2', instance: 'hostnet', node: 'me', gpuIndexes: [], generation: 0 })
  const runs: string[] = []
  const runtime = {
    state: async () => { throw new Error('no such capsule') },
    list: async () => [],
    run: async (spec: { name: string }) => { runs.push(spec.name); throw new Error('must not run') }
  } as unknown as NodeRuntime
  const sup = new Supervisor({ self: 'me', capsules: () => table, write, runtime, images: { prepare: async () => { throw new Error('must not pull') } }, log: pino({ level: 'silent' }) })
  t.teardown(async () => { await sup.stop() })
  sup.start()
  await failed
  t.same(reports, [{ state: 'failed', reason: 'this node does not allow host networking (set [capsules] allow_host_network = true in its config)' }], 'failed with the reason, never pulling')
  t.same(runs, [], 'nothing started')
  t.equal(runtimeNetwork('host'), 'host')
  t.equal(runtimeNetwork(undefined), 'host', 'absent: as before')
  t.equal(runtimeNetwork('none'), 'private', 'none: loopback only')
})
