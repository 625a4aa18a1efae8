// image-fanout: 8 nodes pull the same ~256 MiB image at the same moment
// (32 MiB with --quick) from a real registry (Debian's docker-registry)
// behind a proxy throttled to 50 MB/s like a remote registry — once with the
// piece exchange on, once with it off (every node straight from the
// registry), in the same run. Figures: registry blob egress / image size
// with P2P (goal ≤ 1.2) and wall time with P2P / without (goal ≤ 0.5).
// The nodes are libp2p nodes in one process on loopback (no admission, no
// membership: candidates are the other seven), so this measures the content
// path, not the agent's start-up; then 8 agent processes pull the same image
// with `bolt-agent pull` (agents* figures), against the same baseline.
// That is the agents' first work after the cluster formed, and it pays
// one-time costs of each process: V8 compiles the content path as it gets
// hot (its compiler threads took about 12% of the machine's CPU during such
// a pull, measured with perf), and bulk TCP connections are dialed beside the
// QUIC ones. Then the same agents pull a second image of the same layer
// sizes (agentsWarm* figures), as a cluster that has been running would.
// The verdict reads the first pull, as before the second was added.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLibp2p, type Libp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { EPHEMERAL_LISTEN, transportModules, transportOf } from '../quic/transports.js'
import { BlobStore } from '../p2p/content/blob-store.js'
import { ImagePuller } from '../p2p/content/image-puller.js'
import { PieceExchange } from '../p2p/content/piece-exchange.js'
import { RegistryClient } from '../p2p/content/registry-client.js'
import { buildImage, pushImage, startCountingProxy, startRegistry } from '../test/helpers/registry.js'
import { Cluster } from '../test/helpers/harness.js'
import type { Scenario, ScenarioReport } from './report.js'

const MiB = 1024 * 1024
const NODES = 8
/** 50 MB/s, the stand-in for a remote registry. */
const REGISTRY_BYTES_PER_SECOND = 50 * 1000 * 1000

interface FanoutNode { libp2p: Libp2p, store: BlobStore, ex: PieceExchange | undefined, puller: ImagePuller, id: string, dir: string }

async function makeNodes (p2p: boolean): Promise<FanoutNode[]> {
  const nodes: FanoutNode[] = []
  const ids = (): string[] => nodes.map(n => n.id)
  for (let i = 0; i < NODES; i++) {
    const dir = await mkdtemp(join(tmpdir(), 'bolt-fanout-'))
    // libp2p rate-limits inbound connections per host (5/s by default); 8 nodes on one loopback address dial 28 at once.
    const libp2p = await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), connectionManager: { inboundConnectionThreshold: 1000, maxIncomingPendingConnections: 100 }, services: { identify: identify() } })
    const store = await BlobStore.open({ root: dir })
    const ex = p2p ? new PieceExchange({ libp2p, store }) : undefined
    await ex?.start()
    const id = libp2p.peerId.toString()
    const puller = new ImagePuller({ store, exchange: ex, registry: new RegistryClient({ dockerConfigPath: false }), candidates: () => ids().filter(p => p !== id) })
    nodes.push({ libp2p, store, ex, puller, id, dir })
  }
  if (p2p) {
    for (let i = 0; i < nodes.length; i++) {
      for (let j = i + 1; j < nodes.length; j++) {
        await nodes[i]!.libp2p.dial(nodes[j]!.libp2p.getMultiaddrs().find(m => transportOf(m) === 'tcp')!)
      }
    }
  }
  return nodes
}

/**
 * The same pull by 8 agent processes (`bolt-agent pull` on each at once), as
 * users run it: each agent has its own event loop, where the in-process nodes
 * share one. Default membership timings. Each ref in `refs` is pulled by all
 * agents at once, one ref after the other, in the same cluster: the first
 * pull is the agents' first work after they formed the cluster, the second
 * finds them warm (see the header). Returns seconds and blob egress per pull.
 */
async function pullWithAgents (refs: string[], egress: () => number, reset: () => void): Promise<Array<{ seconds: number, egress: number }>> {
  const cluster = await Cluster.create('[mirror]\nlisten = "127.0.0.1:0"\n')
  try {
    const agents = await cluster.formAlive(NODES, 'quic')
    const out: Array<{ seconds: number, egress: number }> = []
    for (const ref of refs) {
      reset()
      const t0 = performance.now()
      const results = await Promise.all(agents.map(async a => await a.cli(['pull', ref, '--json'], 600_000)))
      const seconds = (performance.now() - t0) / 1000
      const failed = results.find(r => r.code !== 0)
      if (failed !== undefined) throw new Error(`an agent's pull of ${ref} failed: ${failed.stderr.trim().slice(-300)}`)
      out.push({ seconds, egress: egress() })
    }
    return out
  } finally {
    await cluster.destroy()
  }
}

async function stopNodes (nodes: FanoutNode[]): Promise<void> {
  for (const n of nodes) {
    await n.ex?.stop()
    await n.libp2p.stop()
    await n.store.close()
    await rm(n.dir, { recursive: true, force: true })
  }
}

export const scenario: Scenario = {
  name: 'image-fanout',
  description: `${NODES} nodes pull one image at once through a 50 MB/s registry, P2P on vs off`,
  run: async ({ quick }): Promise<ScenarioReport> => {
    const layerSize = (quick ? 8 : 64) * MiB
    const registry = await startRegistry()
    const proxy = await startCountingProxy(registry.url, { bytesPerSecond: REGISTRY_BYTES_PER_SECOND })
    try {
      const img = await buildImage({ extraLayerSizes: [layerSize, layerSize, layerSize, layerSize] })
      await pushImage(registry.url, 'bench/fanout', 'v1', img)
      const ref = `${proxy.host}/bench/fanout:v1`
      // Same layer sizes, other bytes: the agents' second pull.
      const img2 = await buildImage({ extraLayerSizes: [layerSize, layerSize, layerSize, layerSize] })
      await pushImage(registry.url, 'bench/fanout2', 'v1', img2)
      const runOnce = async (p2p: boolean): Promise<{ seconds: number, egress: number }> => {
        const nodes = await makeNodes(p2p)
        try {
          proxy.reset()
          const t0 = performance.now()
          await Promise.all(nodes.map(async n => await n.puller.pull(ref)))
          const seconds = (performance.now() - t0) / 1000
          for (const n of nodes) for (const l of img.layers) if (!n.store.hasSync(l.digest)) throw new Error(`node ${n.id} is missing ${l.digest}`)
          return { seconds, egress: proxy.blobBytes() }
        } finally {
          await stopNodes(nodes)
        }
      }
      const on = await runOnce(true)
      const off = await runOnce(false)
      const pulls = await pullWithAgents([ref, `${proxy.host}/bench/fanout2:v1`], () => proxy.blobBytes(), () => proxy.reset())
      const agents = pulls[0]!
      const warm = pulls[1]!
      const egressRatio = on.egress / img.blobBytes
      const timeRatio = on.seconds / off.seconds
      // The shortest the run without P2P could take: every node's copy through
      // the throttle. A measured baseline above it includes stalls and
      // retries of the registry client (seen here: bodies silent until the
      // idle timeout), which flatter the ratio; both are reported.
      const wireSeconds = NODES * img.blobBytes / REGISTRY_BYTES_PER_SECOND
      return {
        name: 'image-fanout',
        figures: {
          imageMiB: img.blobBytes / MiB,
          egressRatio,
          egressRatioWithoutP2p: off.egress / img.blobBytes,
          secondsWithP2p: on.seconds,
          secondsWithoutP2p: off.seconds,
          timeRatio,
          secondsWithoutP2pAtWireSpeed: wireSeconds,
          timeRatioVsWireSpeed: on.seconds / wireSeconds,
          agentsEgressRatio: agents.egress / img.blobBytes,
          agentsSecondsWithP2p: agents.seconds,
          agentsTimeRatio: agents.seconds / off.seconds,
          agentsWarmEgressRatio: warm.egress / img2.blobBytes,
          agentsWarmSecondsWithP2p: warm.seconds,
          agentsWarmTimeRatio: warm.seconds / off.seconds
        },
        goal: 'egressRatio <= 1.2 and timeRatio <= 0.5 (in-process nodes); the same two for 8 agent processes (agentsEgressRatio, agentsTimeRatio)',
        // Met only when both setups are: the goal is for 8 agents.
        met: egressRatio <= 1.2 && timeRatio <= 0.5 && agents.egress / img.blobBytes <= 1.2 && agents.seconds / off.seconds <= 0.5,
        config: { nodes: NODES, layers: 4, layerBytes: layerSize, registryBytesPerSecond: REGISTRY_BYTES_PER_SECOND, pieceSize: 4 * MiB, inProcess: true, quick, agentsWarm: 'agentsWarm*: a second image of the same layer sizes, pulled by the same agents right after the first (base layer shared); the verdict reads the first pull' }
      }
    } finally {
      await proxy.stop()
      await registry.stop()
    }
  }
}
