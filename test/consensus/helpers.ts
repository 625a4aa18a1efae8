// Shared helpers for the consensus tests: an in-process cluster of RaftNodes
// whose messages go through the wire codec, polling with a bound, and a
// manual clock for the tests where time matters.
import { RaftNode, MemoryStorage, encodeMessage, decodeMessage, type LogStorage, type NormalEntry, type RaftNodeOptions, type Ticker } from '../../consensus/index.js'

export async function until (cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

/**
 * A fake clock for RaftNodes: their ticks happen when the test calls tick(),
 * never on a timer. Each tick lets the messages it caused be delivered (the
 * TestCluster delivers on setImmediate) before it returns.
 */
export class ManualClock {
  private readonly tickers = new Set<() => void>()
  /** Ticks given so far. */
  now = 0

  readonly ticker: Ticker = (tick) => {
    this.tickers.add(tick)
    return () => { this.tickers.delete(tick) }
  }

  /** Nodes ticking on this clock (started and not stopped). */
  get running (): number { return this.tickers.size }

  async tick (n = 1): Promise<void> {
    for (let i = 0; i < n; i++) {
      this.now++
      for (const t of [...this.tickers]) t()
      await settle()
    }
  }
}

/** Lets queued deliveries and the Ready loops they start run (a few macrotask turns). */
export async function settle (turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise(resolve => setImmediate(resolve))
}

export interface TestMember { id: string, node: RaftNode, storage: LogStorage, applied: string[], restores: number }

/** Nodes exchange messages through encode/decode, asynchronously; `cut` drops traffic to/from an id. */
export class TestCluster {
  readonly members = new Map<string, TestMember>()
  readonly cut = new Set<string>()

  /** `clock`: drive this node's ticks from the test (tickMs is then unused). */
  constructor (private readonly clock?: ManualClock) {}

  /** `trace`: see RaftNodeOptions.trace. */
  add (id: string, bootstrap: string[] | undefined, storage: LogStorage = new MemoryStorage(), tickMs = 10, trace?: RaftNodeOptions['trace']): TestMember {
    const applied: string[] = []
    const dec = new TextDecoder()
    let m: TestMember
    const node = new RaftNode({
      id,
      storage,
      ...(bootstrap === undefined ? {} : { bootstrap }),
      tickMs,
      ...(this.clock === undefined ? {} : { ticker: this.clock.ticker }),
      electionTicks: 10,
      heartbeatTicks: 2,
      snapshotThreshold: 20,
      snapshotCatchUpEntries: 5,
      ...(trace === undefined ? {} : { trace }),
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
