// The storage contract between the pure core (synchronous reads) and the
// driver (asynchronous, durable writes). Both MemoryStorage and RaftStorage
// (level) implement it so the simulator and the agent run the same core.
import type { ConfState, Entry, HardState, Snapshot } from '../types.js'

export interface InitialState { hardState: HardState, confState: ConfState }

/** Synchronous read side the core uses. It never blocks on I/O. */
export interface LogReader {
  initialState: () => InitialState
  /**
   * Index of the first entry still in the log. Compaction may keep entries
   * below the snapshot index (for followers that are only a little behind),
   * so this can be <= snapshot().meta.index + 1.
   */
  firstIndex: () => number
  lastIndex: () => number
  /** Term of entry `index` for firstIndex-1 <= index <= lastIndex; throws CompactedError below. */
  term: (index: number) => number
  /**
   * Entries [lo, hi) up to `maxBytes` (at least one entry). Returns null when
   * they are not in memory right now: the store fetches them in the background
   * and calls its `onAvailable` hook; the core retries on a later heartbeat.
   * Throws CompactedError when lo is below firstIndex.
   */
  entries: (lo: number, hi: number, maxBytes: number) => Entry[] | null
  /** The latest snapshot (index 0 and empty data if none). */
  snapshot: () => Snapshot
}

/**
 * What one Ready asks to persist, written as a single atomic batch, synced
 * unless `sync` is false (only a commit index changed: losing it in a power
 * cut is harmless). An unsynced batch still reaches the disk before any
 * later synced one, and survives a crash of the process.
 */
export interface PersistRequest { hardState?: HardState, entries: Entry[], snapshot?: Snapshot, sync?: boolean }

export interface LogStorage extends LogReader {
  /** Durably writes the request (one atomic batch, synced) and updates the read side. */
  save: (req: PersistRequest) => Promise<void>
  /**
   * Durably records a locally made snapshot and drops entries up to its index,
   * except the last `keepEntries` of them (so followers slightly behind catch up from the log).
   */
  compact: (snapshot: Snapshot, keepEntries?: number) => Promise<void>
  /** Called when entries that `entries()` reported missing have been loaded. */
  onAvailable: (() => void) | null
  close: () => Promise<void>
}
