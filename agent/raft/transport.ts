// Raft messages over libp2p (`/bolt/raft/1`) on the shared per-peer link
// (p2p/peer-link.ts): one long-lived stream per peer carrying
// length-prefixed frames, a bounded send queue per peer (Raft retries what is
// dropped, so a full queue or a failed stream drops rather than blocks), and
// an inbound handler that checks every frame and that its sender is the peer
// the connection authenticated.
import type { Stream, StreamHandler } from '@libp2p/interface'
import { decodeMessage, encodeMessage, MAX_RAFT_FRAME_BYTES, type Message } from '../../consensus/index.js'
import { PeerLinks, classifyEnd } from '../../p2p/peer-link.js'
import type { Logger } from '../logger.js'

export const RAFT_PROTOCOL = '/bolt/raft/1'
/** Messages queued per peer before new ones are dropped. */
export const MAX_QUEUED_PER_PEER = 1024
/** Bytes queued per peer before new messages are dropped. */
export const MAX_QUEUED_BYTES_PER_PEER = 64 * 1024 * 1024
const RECONNECT_BACKOFF_MS = [100, 250, 500, 1000, 2000]
/** An idle stream to a peer is closed after this long. */
const STREAM_IDLE_MS = 5000
/** Time allowed to open a stream to a peer (dial included). */
const OPEN_TIMEOUT_MS = 5000

export interface RaftTransportInit {
  self: string
  openStream: (peerId: string, protocol: string, signal: AbortSignal) => Promise<Stream>
  deliver: (msg: Message) => void
  log: Logger
}

export class RaftTransport {
  private readonly links: PeerLinks

  constructor (private readonly o: RaftTransportInit) {
    this.links = new PeerLinks({
      open: async (peer, signal) => await o.openStream(peer, RAFT_PROTOCOL, signal),
      maxFrameBytes: MAX_RAFT_FRAME_BYTES,
      maxBufferSize: MAX_RAFT_FRAME_BYTES + 64,
      idleMs: STREAM_IDLE_MS,
      onFailure: 'drop',
      maxQueuedFrames: MAX_QUEUED_PER_PEER,
      maxQueuedBytes: MAX_QUEUED_BYTES_PER_PEER,
      openTimeoutMs: OPEN_TIMEOUT_MS,
      batch: 64,
      backoffMs: RECONNECT_BACKOFF_MS
    })
  }

  get bytes (): { in: number, out: number } { return this.links.bytes }
  get dropped (): number { return this.links.dropped }

  handler (): StreamHandler {
    return (stream, conn) => { void this.readLoop(stream, conn.remotePeer.toString()) }
  }

  private async readLoop (stream: Stream, peer: string): Promise<void> {
    try {
      await this.links.read(stream, frame => {
        const msg = decodeMessage(frame)
        if (msg.from !== peer) throw new Error(`frame claims to come from ${msg.from}`)
        this.o.deliver(msg)
      })
      stream.abort(new Error('raft stream ended'))
    } catch (err) {
      const e = err as Error
      const kind = classifyEnd(e)
      if (kind !== 'aborted' && kind !== 'reset' && !this.links.stopped) this.o.log.debug({ peer, err: e.message }, 'raft stream from peer closed')
      stream.abort(e)
    }
  }

  /** Queues a message; never throws. */
  send (to: string, msg: Message): void {
    let frame: Uint8Array
    try {
      frame = encodeMessage(msg)
    } catch (err) {
      this.o.log.error({ err: (err as Error).message, type: msg.type }, 'cannot encode raft message')
      return
    }
    this.links.enqueue(to, frame)
  }

  stop (): void {
    this.links.stop(new Error('raft transport stopped'))
  }
}
