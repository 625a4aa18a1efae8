import t from 'tap'
import { ClusterState } from '../../agent/state/cluster-state.js'

t.test('kv commands apply deterministically and snapshots restore with a checksum', async t => {
  const a = new ClusterState()
  const cmds = [
    ClusterState.encode({ op: 'put', req: 'r1', key: 'x', value: '1' }),
    ClusterState.encode({ op: 'cas', req: 'r2', key: 'x', old: '1', value: '2' }),
    ClusterState.encode({ op: 'cas', req: 'r3', key: 'x', old: '1', value: '3' }),
    ClusterState.encode({ op: 'role', req: 'r4', id: 'p1', role: 'client' })
  ]
  cmds.forEach((c, i) => a.apply(i + 1, c))
  t.equal(a.get('x'), '2')
  t.same(a.takeResult('r2'), { ok: true })
  t.same(a.takeResult('r3'), { ok: false, reason: 'mismatch', current: '2' })
  t.equal(a.takeResult('r3'), undefined, 'results are taken once')
  t.same(a.apply(5, new Uint8Array([0xff, 0x00])), { ok: false, reason: 'undecodable command' }, 'garbage is skipped, not fatal')
  t.same(a.apply(6, cmds[1]!), { ok: true }, 'a retried command (same request id) returns its first result')
  t.equal(a.get('x'), '2', 'and changes nothing')
  const c = new ClusterState()
  c.restore(a.snapshot())
  t.same(c.apply(7, cmds[1]!), { ok: true }, 'de-duplication survives a snapshot')
  t.equal(c.get('x'), '2')

  const b = new ClusterState()
  b.restore(a.snapshot())
  t.equal(b.get('x'), '2')
  t.equal(b.roleOf('p1'), 'client')
  const snap = a.snapshot()
  snap[snap.length - 1] ^= 1
  t.throws(() => b.restore(snap), { name: 'SnapshotCorruptError' })
})
