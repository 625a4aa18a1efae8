// Who holds a blob. The piece exchange asks a ProviderSource (kad-dht
// provider records keyed by the CID of the digest, or anything else that
// answers the same questions) and also takes candidate peers from membership,
// which on a small cluster is faster than a DHT walk.
import type { Libp2p } from '@libp2p/interface'
import { digestToCid } from './digest.js'

export interface ProviderSource {
  findProviders: (digest: string, options?: { signal?: AbortSignal }) => AsyncIterable<string>
  provide: (digest: string, options?: { signal?: AbortSignal }) => Promise<void>
  /** Stop announcing (evicted or leaving); records already in the DHT expire with their TTL. */
  withdraw?: (digest: string) => Promise<void>
}

/**
 * kad-dht's bucket size K: a lookup ends once the K closest servers it has
 * heard of have all answered, so in a network of at most K servers it asks
 * every one of them.
 */
export const KAD_BUCKET_SIZE = 20

/** The provider records a kad-dht server keeps and answers GET_PROVIDERS from. */
interface OwnProviderRecords {
  addProvider: (cid: ReturnType<typeof digestToCid>, provider: Libp2p['peerId'], options?: { signal?: AbortSignal }) => Promise<void>
}

export interface DhtProviderSourceOptions {
  /** How many members the cluster has, this node included. Unknown: every provide goes out to the network. */
  members?: () => number
}

/** Provider records in libp2p's content routing (kad-dht on the agent's node). */
export class DhtProviderSource implements ProviderSource {
  constructor (private readonly libp2p: Pick<Libp2p, 'contentRouting' | 'peerId' | 'peerStore'> & { services?: unknown }, private readonly opts: DhtProviderSourceOptions = {}) {}

  async * findProviders (digest: string, options: { signal?: AbortSignal } = {}): AsyncIterable<string> {
    const self = this.libp2p.peerId.toString()
    for await (const p of this.libp2p.contentRouting.findProviders(digestToCid(digest), { signal: options.signal })) {
      const id = p.id.toString()
      if (id !== self) yield id
    }
  }

  /**
   * In a cluster of at most KAD_BUCKET_SIZE members, with this node a DHT
   * server, the record stays in this node's own provider records: every
   * lookup there asks every member, this one included. kad-dht's provide
   * would walk the table and send the record to each member as well, which
   * tells no lookup anything more; 8 agents pulling a 257 MiB image spent
   * about a tenth of their CPU on those walks (measured against this, in
   * 4 alternating pairs). kad-dht's reprovider refreshes own records through
   * the network before they expire, and withdraw deletes them. A server
   * answers with a record only along with the provider's addresses, so
   * until this node's own are in its peer store (shortly after start) the
   * record goes out to the network as well.
   */
  async provide (digest: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const cid = digestToCid(digest)
    const own = await this.ownRecords()
    if (own !== undefined) await own.addProvider(cid, this.libp2p.peerId, { signal: options.signal })
    else await this.libp2p.contentRouting.provide(cid, { signal: options.signal })
  }

  async withdraw (digest: string): Promise<void> {
    await this.libp2p.contentRouting.cancelReprovide(digestToCid(digest))
  }

  /**
   * This node's own kad-dht records, when a provide may stay there (see
   * provide). They are kad-dht's `providers` field, not its public API: a
   * kad-dht without it gets every provide through the network, as before.
   */
  private async ownRecords (): Promise<OwnProviderRecords | undefined> {
    const members = this.opts.members?.()
    if (members === undefined || members > KAD_BUCKET_SIZE) return undefined
    const dht = (this.libp2p.services as { dht?: { getMode?: () => string, providers?: Partial<OwnProviderRecords> } } | undefined)?.dht
    if (dht?.getMode?.() !== 'server' || typeof dht.providers?.addProvider !== 'function') return undefined
    const self = await this.libp2p.peerStore.get(this.libp2p.peerId).catch(() => undefined) // not in the peer store yet: no addresses, provide through the network
    if (self === undefined || self.addresses.length === 0) return undefined
    return dht.providers as OwnProviderRecords
  }
}

/** An in-memory provider table shared by nodes in one process (tests, simulations). */
export class MemoryProviderTable {
  private readonly table = new Map<string, Set<string>>()

  sourceFor (peerId: string): ProviderSource {
    const table = this.table
    return {
      findProviders: async function * (this: void, digest: string): AsyncIterable<string> {
        for (const p of [...(table.get(digest) ?? [])]) if (p !== peerId) yield p
      },
      provide: async (digest: string) => {
        let s = table.get(digest)
        if (s === undefined) { s = new Set(); table.set(digest, s) }
        s.add(peerId)
      },
      withdraw: async (digest: string) => { table.get(digest)?.delete(peerId) }
    }
  }

  providers (digest: string): string[] {
    return [...(this.table.get(digest) ?? [])]
  }
}
