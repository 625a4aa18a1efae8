// relay-goodput: one blob pulled through /bolt/pieces/1 over a relayed
// connection (circuit relay v2, no limits, all three nodes on loopback TCP)
// against the same pull over a direct connection between the same two nodes
// in the same run. Figure: relayedRatio = relayed MB/s ÷ direct MB/s, for
// information: relays are for control traffic; bulk should go direct once
// DCUtR found a path.
import { createReadStream } from 'node:fs'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { createLibp2p, type Libp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { multiaddr } from '@multiformats/multiaddr'
import type { Connection } from '@libp2p/interface'
import { transportModules } from '../quic/transports.js'
import { relayServerInit, DEFAULT_RELAY_SERVICE, RelaySlot } from '../p2p/reachability/index.js'
import { BlobStore } from '../p2p/content/blob-store.js'
import { PieceExchange } from '../p2p/content/piece-exchange.js'
import { waitFor } from '../test/helpers/harness.js'
import type { Scenario, ScenarioReport } from './report.js'

const MiB = 1024 * 1024
const ROUNDS = 3
const LISTEN = ['/ip4/127.0.0.1/tcp/0']

interface Side { libp2p: Libp2p, store: BlobStore, ex: PieceExchange, dir: string }

async function node (relay: boolean): Promise<Libp2p> {
  const base = transportModules()
  return await createLibp2p({
    addresses: { listen: LISTEN },
    ...base,
    transports: [...base.transports, circuitRelayTransport()],
    services: { identify: identify(), ...(relay ? { relay: circuitRelayServer(relayServerInit(DEFAULT_RELAY_SERVICE)) } : {}) }
  })
}

async function side (connFor: () => Connection | undefined): Promise<Side> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-relay-goodput-'))
  const libp2p = await node(false)
  const store = await BlobStore.open({ root: dir })
  const ex = new PieceExchange({
    libp2p,
    store,
    openStream: async (_peer, protocol, signal) => {
      const c = connFor()
      if (c === undefined) throw new Error('no connection for the benchmark')
      return await c.newStream(protocol, { signal })
    }
  })
  await ex.start()
  return { libp2p, store, ex, dir }
}

async function writeRandomBlob (store: BlobStore, size: number): Promise<string> {
  const tmp = join(store.root, 'bench-source')
  const fh = await open(tmp, 'w')
  const hash = createHash('sha256')
  const chunk = randomBytes(4 * MiB)
  for (let off = 0; off < size; off += chunk.length) {
    const part = chunk.subarray(0, Math.min(chunk.length, size - off))
    part[0] = off & 0xff
    hash.update(part)
    await fh.write(part)
  }
  await fh.close()
  const digest = `sha256:${hash.digest('hex')}`
  await store.put(createReadStream(tmp, { highWaterMark: 4 * MiB }), digest, { size })
  await rm(tmp)
  return digest
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] as number
}

export const scenario: Scenario = {
  name: 'relay-goodput',
  description: 'one blob through /bolt/pieces/1 over a relayed connection vs a direct one, same nodes, same run',
  run: async ({ quick }): Promise<ScenarioReport> => {
    const size = (quick ? 16 : 128) * MiB
    const relay = await node(true)
    let conn: Connection | undefined
    const a = await side(() => undefined)
    const b = await side(() => conn)
    const slot = new RelaySlot(a.libp2p, { checkMs: 1000 })
    try {
      const digest = await writeRandomBlob(a.store, size)
      await a.store.pieceManifest(digest, b.ex.pieceSize)
      await a.libp2p.dial(relay.getMultiaddrs()[0]!)
      await slot.start()
      if (await waitFor(async () => slot.held(), 15_000) < 0) throw new Error('no relay slot')
      const circuit = a.libp2p.getMultiaddrs().find(m => m.toString().includes('/p2p-circuit'))!
      const relayed = await b.libp2p.dial(circuit)
      if (!relayed.remoteAddr.toString().includes('/p2p-circuit')) throw new Error('expected a relayed connection')
      const direct = await b.libp2p.dial(multiaddr(a.libp2p.getMultiaddrs().find(m => !m.toString().includes('/p2p-circuit'))!.toString()), { force: true })
      const rates = { relayed: [] as number[], direct: [] as number[] }
      for (let round = 0; round < ROUNDS; round++) {
        for (const [kind, c] of [['relayed', relayed], ['direct', direct]] as const) {
          conn = c
          const t0 = performance.now()
          const stats = await b.ex.pull(digest, { size, candidates: [a.libp2p.peerId.toString()] })
          const ms = performance.now() - t0
          if (stats.bytesFromPeers < size) throw new Error(`pull moved ${stats.bytesFromPeers} of ${size} bytes`)
          rates[kind].push(size / MiB / (ms / 1000))
          await b.store.delete(digest)
        }
      }
      const relayedMBps = Math.max(...rates.relayed)
      const directMBps = Math.max(...rates.direct)
      return {
        name: 'relay-goodput',
        figures: { relayedMBps, directMBps, relayedRatio: relayedMBps / directMBps, relayedMedianRatio: median(rates.relayed) / median(rates.direct) },
        goal: 'none (for information: relays carry control traffic; bulk goes direct after DCUtR)',
        met: null,
        config: { blobBytes: size, transport: 'tcp loopback, relay in the same process', relayLimits: 'none', rounds: ROUNDS, figure: 'best of rounds (MB/s = MiB/s)', quick }
      }
    } finally {
      slot.stop()
      for (const s of [b, a]) {
        await s.ex.stop()
        await s.libp2p.stop()
        await s.store.close()
        await rm(s.dir, { recursive: true, force: true })
      }
      await relay.stop()
    }
  }
}
