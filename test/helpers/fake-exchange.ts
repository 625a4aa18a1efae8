// A stand-in for the piece exchange in mirror tests: `pull` is the test's
// own (it writes pieces into the store's partial file as it likes); no
// recent pieces are kept, so the mirror reads every piece it sends from disk.
import type { PieceExchange, PullOptions, PullStats } from '../../p2p/content/piece-exchange.js'
import { RecentPieces } from '../../p2p/content/recent-pieces.js'

export function fakeExchange (pieceSize: number, pull: (digest: string, opts: PullOptions) => Promise<PullStats>): PieceExchange {
  const fake = { pieceSize, recent: new RecentPieces(0), probeSize: async () => undefined, pull }
  return fake as unknown as PieceExchange
}
