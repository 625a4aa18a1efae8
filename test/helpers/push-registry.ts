// A cluster registry on one mirror listener for unit tests: a real blob
// store in a temp dir, the Raft KV's put/delete/keys over a Map (the
// stand-in these tests need; the real one is in push-agents.test.ts), no peers.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { MirrorServer } from '../../agent/mirror/mirror-server.js'
import { pushCredential } from '../../agent/registry/auth.js'
import { Catalog, type CatalogKv } from '../../agent/registry/catalog.js'
import { ClusterRegistry } from '../../agent/registry/push-handler.js'
import type { CommandInput } from '../../agent/state/cluster-state.js'
import { BlobStore } from '../../p2p/content/blob-store.js'
import type { PieceExchange } from '../../p2p/content/piece-exchange.js'
import { PieceBuffers } from '../../p2p/content/piece-buffers.js'
import { RecentPieces } from '../../p2p/content/recent-pieces.js'
import { RegistryClient } from '../../p2p/content/registry-client.js'

export const CRED = pushCredential('11'.repeat(32))
export const AUTH = { authorization: `Bearer ${CRED}` }

/** The Raft KV's put/delete/keys over a Map (the stand-in this unit test needs). */
export function memoryKv (): CatalogKv & { map: Map<string, string> } {
  const map = new Map<string, string>()
  return {
    map,
    read: async key => map.get(key),
    write: async (cmd: CommandInput) => {
      if (cmd.op === 'put') map.set(cmd.key, cmd.value)
      else if (cmd.op === 'delete') map.delete(cmd.key)
      return { ok: true }
    },
    state: { get: key => map.get(key), keys: (prefix, limit = 10_000) => [...map.keys()].filter(k => k.startsWith(prefix)).sort().slice(0, limit) }
  }
}

export interface SetupOptions {
  /** The store's piece size (its default when absent). */
  pieceSize?: number
  /** Replaces parts of the stand-in exchange (whose pull fails: no peers). */
  exchange?: (store: BlobStore) => Partial<PieceExchange>
  /** Given to the registry and the mirror. */
  log?: { info: (obj: object, msg: string) => void, warn: (obj: object, msg: string) => void, debug: (obj: object, msg: string) => void }
}

export async function setup (t: Test, opts: SetupOptions = {}): Promise<{ base: string, host: string, store: BlobStore, kv: ReturnType<typeof memoryKv>, dir: string, registry: ClusterRegistry }> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-push-server-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const store = await BlobStore.open({ root: join(dir, 'store'), ...(opts.pieceSize !== undefined ? { pieceSize: opts.pieceSize } : {}) })
  t.teardown(async () => { await store.close() })
  const kv = memoryKv()
  const exchange = { pieceSize: store.pieceSize, recent: new RecentPieces(0), buffers: new PieceBuffers(), probeSize: async () => undefined, pull: async () => { throw new Error('no peers') }, requestReplicate: async () => {}, ...opts.exchange?.(store) } as unknown as PieceExchange
  const log = opts.log !== undefined ? { log: opts.log } : {}
  const registry = new ClusterRegistry({ store, exchange, catalog: new Catalog(kv), candidates: () => [], replicaTargets: () => [], self: 'self', replicas: 2, credential: () => CRED, gcGraceMs: 60_000, ...log })
  const mirror = new MirrorServer({ store, registry: new RegistryClient({ dockerConfigPath: false }), exchange, candidates: () => [], listen: '127.0.0.1:0', upstream: '127.0.0.1:9', serveStaleTags: false, push: registry, ...log })
  const base = await mirror.start()
  t.teardown(async () => { await mirror.stop(); await registry.stop() })
  return { base, host: base.slice('http://'.length), store, kv, dir, registry }
}

