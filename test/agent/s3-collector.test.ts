// The S3 collector against a PUT of the same bytes as a deleted object:
// the PUT stores and pins before its record's guard (`storing`), so a
// sweep may unpin and free the same id in between. The PUT must then
// either find its blobs and pin them again, or fail — never commit a
// record whose blobs are gone.
import t from 'tap'
import { S3Collector, type S3CollectorDeps } from '../../agent/s3/collector.js'
import type { S3Table } from '../../agent/s3/s3-state.js'
import type { ObjectManifest } from '../../p2p/content/objects.js'

const ID = 'sha256:' + 'a'.repeat(64)
const CHUNK = 'sha256:' + 'b'.repeat(64)
const manifest = { mediaType: 'm', size: 1, chunks: [{ digest: CHUNK, size: 1 }] } as unknown as ObjectManifest

function fakes (): { deps: S3CollectorDeps, blobs: Set<string>, pins: Map<string, string[]>, holdUnpin: () => () => void } {
  const blobs = new Set([ID, CHUNK])
  const pins = new Map<string, string[]>([[`object:${ID}`, [ID, CHUNK]]])
  let gate: Promise<void> | undefined
  const refCount = (d: string): number => [...pins.values()].filter(ds => ds.includes(d)).length
  const deps: S3CollectorDeps = {
    table: () => ({ allObjects: () => [], allUploads: () => [] }) as unknown as S3Table,
    kvGet: () => undefined,
    store: {
      unpin: async (owner: string) => { await gate; pins.delete(owner) },
      pin: async (owner: string, ds: string[]) => { pins.set(owner, ds) },
      refCount,
      delete: async (d: string) => blobs.delete(d)
    },
    objects: {
      readManifest: async () => manifest,
      localManifest: async (id: string) => blobs.has(id) && manifest.chunks.every(c => blobs.has(c.digest)) ? manifest : undefined
    },
    delayMs: 1_000_000,
    log: { info: () => {}, warn: () => {} }
  }
  const holdUnpin = (): () => void => {
    let open!: () => void
    gate = new Promise<void>(resolve => { open = resolve })
    return () => { gate = undefined; open() }
  }
  return { deps, blobs, pins, holdUnpin }
}

t.test('a PUT that pinned the id a sweep is freeing fails instead of committing a record without blobs', async t => {
  const { deps, blobs, holdUnpin } = fakes()
  const c = new S3Collector(deps)
  c.release(ID)
  await c.sweep() // released ids wait one interval
  const open = holdUnpin()
  const sweeping = c.sweep()
  // The PUT stored the same bytes (already present, pinned under the same owner) and now commits its record.
  let committed = false
  const put = c.storing(ID, async () => { committed = true })
  open()
  await sweeping
  await t.rejects(put, { name: 'S3Error', code: 'ServiceUnavailable' })
  t.notOk(committed, 'no record committed')
  t.notOk(blobs.has(ID), 'the sweep freed the blobs it had unpinned')
})

t.test('a PUT of the same bytes after a sweep freed them pins them again', async t => {
  const { deps, blobs, pins } = fakes()
  const c = new S3Collector(deps)
  c.release(ID)
  await c.sweep()
  await c.sweep()
  t.notOk(blobs.has(ID), 'freed')
  // Stored again (written fresh), then a sweep of an earlier release unpins it before the record.
  blobs.add(ID).add(CHUNK)
  pins.delete(`object:${ID}`)
  let committed = false
  await c.storing(ID, async () => { committed = true })
  t.ok(committed, 'the record is committed')
  t.same(pins.get(`object:${ID}`), [ID, CHUNK], 'its blobs are pinned again')
})

t.test('a sweep leaves an id a PUT is storing', async t => {
  const { deps, blobs } = fakes()
  const c = new S3Collector(deps)
  c.release(ID)
  await c.sweep()
  let release!: () => void
  const put = c.storing(ID, async () => { await new Promise<void>(resolve => { release = resolve }) })
  await c.sweep()
  release()
  await put
  t.ok(blobs.has(ID) && blobs.has(CHUNK), 'nothing freed')
})
