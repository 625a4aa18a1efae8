// Shared helpers for the consensus tests: an in-process cluster of RaftNodes
// whose messages go through the wire codec, and polling with a bound.
import { RaftNode, MemoryStorage, encodeMessage, decodeMessage, type LogStorage, type NormalEntry } from '../../consensus/index.js'

export async function until (cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

export interface TestMember { id: string, node: RaftNode, storage: LogStorage, applied: string[], restores: number }

/** Nodes exchange messages through encode/decode, asynchronously; `cut` drops traffic to/from an id. */
export class TestCluster {
  readonly members = new Map<string, TestMember>()
  readonly cut = new Set<string>()

  add (id: string, bootstrap: string[] | undefined, storage: LogStorage = new MemoryStorage(), tickMs = 10): TestMember {
    const applied: string[] = []
    const dec = new TextDecoder()
    let m: TestMember
    const node = new RaftNode({
      id,
      storage,
      ...(bootstrap === undefined ? {} : { bootstrap }),
      tickMs,
      electionTicks: 10,
      heartbeatTicks: 2,
      snapshotThreshold: 20,
      snapshotCatchUpEntries: 5,
      send: (to, msg) => {
        const bytes = encodeMessage(msg)
        setImmediate(() => {
          if (this.cut.has(id) || this.cut.has(to)) return
          this.members.get(to)?.node.receive(decodeMessage(bytes))
        })
      },
      apply: (e: NormalEntry) => { applied.push(dec.decode(e.data)) },
      snapshot: async () => new TextEncoder().encode(JSON.stringify(applied)),
      restore: (data: Uint8Array) => { m.restores++; applied.splice(0, applied.length, ...(JSON.parse(dec.decode(data)) as string[])) },
    })
    m = { id, node, storage, applied, restores: 0 }
    this.members.set(id, m)
    return m
  }

  leader (): TestMember | undefined {
    return [...this.members.values()].find(m => !this.cut.has(m.id) && m.node.status().role === 'leader')
  }

  async stopAll (): Promise<void> {
    for (const m of this.members.values()) await m.node.stop()
  }
}
