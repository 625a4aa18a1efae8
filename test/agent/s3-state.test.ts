// The S3 part of the Raft state: each command's preconditions hold at apply
// (a bucket exists once, is deleted only empty, an upload completes once,
// repair changes holders only while the key names the same object), and a
// snapshot restores exactly what it saved, through ClusterState's own codec.
import t from 'tap'
import { ClusterState } from '../../agent/state/cluster-state.js'
import type { Command } from '../../agent/state/commands.js'

const ID = `sha256:${'a'.repeat(64)}`
const ID2 = `sha256:${'b'.repeat(64)}`
const rec = (id = ID) => ({ id, size: 3, etag: '0'.repeat(32), modified: 1, holders: ['p1'] })

t.test('S3 commands through ClusterState: preconditions at apply, snapshot round trip', async t => {
  const s = new ClusterState()
  let i = 0
  const run = (cmd: Record<string, unknown>) => s.apply(++i, ClusterState.encode({ req: `r${i}`, ...cmd } as unknown as Command))
  t.same(run({ op: 's3.object.put', bucket: 'bkt', key: 'k', record: rec() }), { ok: false, reason: 'NoSuchBucket' }, 'no object without its bucket')
  t.same(run({ op: 's3.bucket.create', bucket: 'bkt', replicas: 2, created: 1 }), { ok: true })
  t.same(run({ op: 's3.bucket.create', bucket: 'bkt', replicas: 2, created: 2 }), { ok: false, reason: 'BucketAlreadyOwnedByYou' }, 'created once')
  t.same(run({ op: 's3.object.put', bucket: 'bkt', key: 'k', record: rec() }), { ok: true })
  t.same(run({ op: 's3.bucket.delete', bucket: 'bkt' }), { ok: false, reason: 'BucketNotEmpty' })
  t.same(run({ op: 's3.object.holders', bucket: 'bkt', key: 'k', id: ID2, holders: ['x'] }), { ok: false, reason: 'changed' }, 'repair of an object the key no longer names changes nothing')
  t.same(run({ op: 's3.object.holders', bucket: 'bkt', key: 'k', id: ID, holders: ['p1', 'p2'] }), { ok: true })
  t.same(s.s3.object('bkt', 'k')?.holders, ['p1', 'p2'])
  t.same(run({ op: 's3.upload.create', bucket: 'bkt', key: 'big', uploadId: 'c'.repeat(32), initiated: 1, meta: { md5chksum: 'x' } }), { ok: true })
  t.same(run({ op: 's3.upload.part', uploadId: 'c'.repeat(32), part: { n: 1, id: ID2, size: 3, etag: '1'.repeat(32), modified: 1, holders: [] } }), { ok: true })
  t.same(run({ op: 's3.key.put', key: { accessKey: 'BKAAAAAAAAAAAAAAAAAA', secret: 's'.repeat(40), readOnly: true, created: 1 } }), { ok: true })

  const copy = new ClusterState()
  copy.restore(s.snapshot())
  t.same(copy.s3.toSnapshot(), s.s3.toSnapshot(), 'the snapshot restores buckets, objects, uploads and keys')
  t.equal(copy.s3.upload('c'.repeat(32))?.parts.size, 1)

  t.same(run({ op: 's3.upload.complete', uploadId: 'c'.repeat(32), record: rec(ID2) }), { ok: true })
  t.same(run({ op: 's3.upload.complete', uploadId: 'c'.repeat(32), record: rec(ID2) }), { ok: false, reason: 'NoSuchUpload' }, 'completed once')
  t.equal(s.s3.object('bkt', 'big')?.id, ID2)
  t.same(run({ op: 's3.object.delete', bucket: 'bkt', key: 'k' }), { ok: true })
  t.same(run({ op: 's3.object.delete', bucket: 'bkt', key: 'big' }), { ok: true })
  t.same(run({ op: 's3.bucket.delete', bucket: 'bkt' }), { ok: true }, 'empty: deleted')
  t.throws(() => ClusterState.encode({ req: 'x', op: 's3.object.put', bucket: 'bkt', key: 'k'.repeat(1025), record: rec() } as unknown as Command), 'a key over 1024 bytes is not a command')
})
