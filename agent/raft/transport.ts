// Raft messages over libp2p (`/bolt/raft/1`): one long-lived stream per peer
// carrying length-prefixed frames, a bounded send queue per peer (Raft
// retries what is dropped, so a full queue drops rather than blocks), and an
// inbound handler that checks every frame and that its sender is the peer
// the connection authenticated.
import { lpStream } from '@libp2p/utils'
import type { Stream, StreamHandler } from '@libp2p/interface'
import { decodeMessage, encodeMessage, MAX_RAFT_FRAME_BYTES, type Message } from '../../consensus/index.js'
import type { Logger } from '../logger.js'

export const RAFT_PROTOCOL = '/bolt/raft/1'
/** Messages queued per peer before new ones are dropped. */
export const MAX_QUEUED_PER_PEER = 1024
/** Bytes queued per peer before new messages are dropped. */
export const MAX_QUEUED_BYTES_PER_PEER = 64 * 1024 * 1024
const RECONNECT_BACKOFF_MS = [100, 250, 500, 1000, 2000]
/** An idle stream to a peer is closed after this long. */
const STREAM_IDLE_MS = 5000

export interface RaftTransportInit {
  self: string
  openStream: (peerId: string, protocol: string, signal: AbortSignal) => Promise<Stream>
  deliver: (msg: Message) => void
  log: Logger
}

interface PeerQueue {
  frames: Uint8Array[]
  bytes: number
  running: boolean
  failures: number
  /** Wakes a writer idling on an open stream. */
  wake: (() => void) | undefined
}

export class RaftTransport {
  private readonly queues = new Map<string, PeerQueue>()
  private readonly ac = new AbortController()
  private readonly streams = new Set<Stream>()
  readonly bytes = { in: 0, out: 0 }
  dropped = 0

  constructor (private readonly o: RaftTransportInit) {}

  handler (): StreamHandler {
    return (stream, conn) => { void this.readLoop(stream, conn.remotePeer.toString()) }
  }

  private async readLoop (stream: Stream, peer: string): Promise<void> {
    this.streams.add(stream)
    const lp = lpStream(stream, { maxDataLength: MAX_RAFT_FRAME_BYTES, maxBufferSize: MAX_RAFT_FRAME_BYTES + 64 })
    try {
      for (;;) {
        const frame = await lp.read({ signal: this.ac.signal })
        this.bytes.in += frame.byteLength
        const msg = decodeMessage(frame.subarray())
        if (msg.from !== peer) throw new Error(`frame claims to come from ${msg.from}`)
        this.o.deliver(msg)
      }
    } catch (err) {
      const e = err as Error
      if (e.name !== 'UnexpectedEOFError' && e.name !== 'AbortError' && e.name !== 'StreamResetError') {
        this.o.log.debug({ peer, err: e.message }, 'raft stream from peer closed')
      }
      stream.abort(e)
    } finally {
      this.streams.delete(stream)
    }
  }

  /** Queues a message; never throws. */
  send (to: string, msg: Message): void {
    if (this.ac.signal.aborted) return
    let frame: Uint8Array
    try {
      frame = encodeMessage(msg)
    } catch (err) {
      this.o.log.error({ err: (err as Error).message, type: msg.type }, 'cannot encode raft message')
      return
    }
    let q = this.queues.get(to)
    if (q === undefined) { q = { frames: [], bytes: 0, running: false, failures: 0, wake: undefined }; this.queues.set(to, q) }
    if (q.frames.length >= MAX_QUEUED_PER_PEER || q.bytes + frame.byteLength > MAX_QUEUED_BYTES_PER_PEER) { this.dropped++; return }
    q.frames.push(frame)
    q.bytes += frame.byteLength
    q.wake?.()
    if (!q.running) { q.running = true; void this.writeLoop(to, q) }
  }

  private async writeLoop (peer: string, q: PeerQueue): Promise<void> {
    while (q.frames.length > 0 && !this.ac.signal.aborted) {
      let stream: Stream | undefined
      try {
        stream = await this.o.openStream(peer, RAFT_PROTOCOL, AbortSignal.any([this.ac.signal, AbortSignal.timeout(5000)]))
        this.streams.add(stream)
        const lp = lpStream(stream, { maxDataLength: MAX_RAFT_FRAME_BYTES, maxBufferSize: MAX_RAFT_FRAME_BYTES + 64 })
        q.failures = 0
        // Write what is queued; keep the stream open while frames keep coming.
        for (;;) {
          while (q.frames.length > 0 && !this.ac.signal.aborted) {
            const batch = q.frames.splice(0, 64)
            for (const f of batch) q.bytes -= f.byteLength
            // No signal here: lp's write waits for 'drain' through p-event, which
            // never removes the abort listener it adds, so a long-lived signal
            // gained one listener per write (a leak that made every later
            // addEventListener slower). stop() aborts the stream, which ends the wait.
            await lp.writeV(batch)
            for (const f of batch) this.bytes.out += f.byteLength
          }
          if (this.ac.signal.aborted) break
          const woke = await new Promise<boolean>(resolve => {
            const timer = setTimeout(() => { q.wake = undefined; resolve(false) }, STREAM_IDLE_MS)
            q.wake = () => { clearTimeout(timer); q.wake = undefined; resolve(true) }
          })
          if (!woke) break
        }
        await stream.close().catch(() => {}) // idle stream: anything unsent is resent by Raft
      } catch (err) {
        stream?.abort(err as Error)
        // Drop what was queued: Raft resends from its own state.
        this.dropped += q.frames.length
        q.frames = []
        q.bytes = 0
        const wait = RECONNECT_BACKOFF_MS[Math.min(q.failures, RECONNECT_BACKOFF_MS.length - 1)] as number
        q.failures++
        await new Promise(resolve => setTimeout(resolve, wait))
      } finally {
        if (stream !== undefined) this.streams.delete(stream)
      }
    }
    q.running = false
    if (q.frames.length > 0 && !this.ac.signal.aborted) { q.running = true; void this.writeLoop(peer, q) }
  }

  stop (): void {
    this.ac.abort()
    for (const q of this.queues.values()) q.wake?.()
    for (const s of this.streams) s.abort(new Error('raft transport stopped'))
    this.streams.clear()
    this.queues.clear()
  }
}
