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

/** Provider records in libp2p's content routing (kad-dht on the agent's node). */
export class DhtProviderSource implements ProviderSource {
  constructor (private readonly libp2p: Pick<Libp2p, 'contentRouting' | 'peerId'>) {}

  async * findProviders (digest: string, options: { signal?: AbortSignal } = {}): AsyncIterable<string> {
    const self = this.libp2p.peerId.toString()
    for await (const p of this.libp2p.contentRouting.findProviders(digestToCid(digest), { signal: options.signal })) {
      const id = p.id.toString()
      if (id !== self) yield id
    }
  }

  async provide (digest: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.libp2p.contentRouting.provide(digestToCid(digest), { signal: options.signal })
  }

  async withdraw (digest: string): Promise<void> {
    await this.libp2p.contentRouting.cancelReprovide(digestToCid(digest))
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
