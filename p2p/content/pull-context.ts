// What one pull may use of the exchange it runs in: node-wide request
// budgets, the peers to avoid, where verified pieces go, the counters. An
// ActivePull sees only this, so the exchange's own state stays private.
import type { Stream } from '@libp2p/interface'
import type { PieceBuffer, PieceBuffers } from './piece-buffers.js'
import type { PickerConfig } from './piece-picker.js'
import type { ProviderSource } from './providers.js'

export interface PullProgress {
  digest: string
  size: number
  piecesDone: number
  pieceCount: number
  bytesFromPeers: number
  bytesFromRegistry: number
}

export interface PullOptions {
  size: number
  /** Peers to ask directly (e.g. live cluster members), besides the provider source. */
  candidates?: string[]
  /**
   * Fetch a byte range from the registry; absent = peers only. It may read
   * the bytes into `into` (a pooled buffer of at least the range's length)
   * and return a view of it, or return bytes of its own.
   */
  registry?: (range: { start: number, length: number }, signal: AbortSignal, into: Uint8Array) => Promise<Uint8Array>
  signal?: AbortSignal
  onProgress?: (p: PullProgress) => void
}

export interface PullStats {
  bytesFromPeers: number
  bytesFromRegistry: number
  bannedPeers: string[]
}

export interface ExchangeCounters {
  bytesFromPeers: number
  bytesFromRegistry: number
  bytesServed: number
}

export interface PullContext {
  readonly self: string
  /** The exchange's piece buffers. */
  readonly buffers: PieceBuffers
  readonly providers: ProviderSource | undefined
  /** Picker tuning (deadlines, pipelining) given to the exchange. */
  readonly picker: Partial<Omit<PickerConfig, 'pieceCount' | 'self' | 'registry'>> | undefined
  readonly counters: ExchangeCounters
  isDead: (peer: string) => boolean
  isBanned: (peer: string) => boolean
  ban: (peer: string) => void
  /** Tells peers (and the provider records) that this node serves `digest`. */
  announce: (digest: string) => void
  /** Keeps a verified piece in memory to serve again. */
  keepRecent: (digest: string, pieceSize: number, index: number, piece: PieceBuffer) => void
  savePieceManifest: (m: { digest: string, size: number, pieceSize: number, hashes: Uint8Array }) => Promise<void>
  openStream: (peer: string, signal: AbortSignal) => Promise<Stream>
  /** Node-wide caps across pulls: what may still start now. */
  requestBudget: () => number
  registryBudget: () => number
  peerRoom: (peer: string) => number
  registryRequestStarted: () => void
  registryRequestEnded: () => void
  pieceRequestStarted: (peer: string) => void
  pieceRequestEnded: (peer: string) => void
}
