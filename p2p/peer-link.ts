// One framed link per peer, shared by membership (/bolt/swim/1) and the Raft
// transport (/bolt/raft/1): a long-lived outbound stream of length-prefixed
// frames (the framing of @libp2p/utils' lpStream, unchanged on the wire), a
// queue bounded in frames and bytes, idle close, and an inbound reader that
// bounds frame size and idle time. The two users differ only where their
// protocols do, and say so through `onFailure`:
//  - 'drop' (Raft): one writer per peer opens the stream, a full queue or a
//    failed stream drops frames (Raft resends from its own state), reopening
//    backs off.
//  - 'fresh-stream' (membership): each frame has a promise; a frame with no
//    open link opens a stream of its own (it never waits behind another's
//    dial, which may be to a dead address) and that stream becomes the link;
//    frames left queued on a failed link each go out on a fresh stream.
import { FrameCutter, DEFAULT_READ_BUFFER_BYTES, frameAll, named } from './frame-cutter.js'
import type { AbortOptions, Stream, StreamMessageEvent } from '@libp2p/interface'

/** How a stream's end is classified, once, for every user of the link. */
export type EndKind = 'clean' | 'reset' | 'aborted' | 'decode' | 'error'

/**
 * `clean`: the peer closed between frames (the writer closed an idle link);
 * `reset`: the peer aborted the stream; `aborted`: our own signal (stop,
 * idle or write timeout); `decode`: an oversized or malformed frame (the
 * length-prefix reader's errors, or a decoder's error named `*DecodeError`);
 * `error`: anything else.
 */
export function classifyEnd (err: unknown): EndKind {
  const name = err instanceof Error ? err.name : ''
  if (name === 'UnexpectedEOFError' || name === 'StreamClosedError') return 'clean'
  if (name === 'StreamResetError') return 'reset'
  if (name === 'AbortError' || name === 'TimeoutError') return 'aborted'
  if (name === 'InvalidDataLengthError' || name === 'InvalidDataLengthLengthError' || name === 'InvalidMessageLengthError' || name.endsWith('DecodeError')) return 'decode'
  return 'error'
}

/** A stream that ended between frames. */
export function isCleanEnd (err: unknown): boolean { return classifyEnd(err) === 'clean' }

function toError (err: unknown): Error { return err instanceof Error ? err : new Error(String(err)) }

function isWritable (stream: Stream): boolean { return stream.status === 'open' && stream.writeStatus === 'writable' }

export interface PeerLinksInit {
  /** Opens a stream to the peer; `hint` is what `send` was given (membership passes the peer's addresses). */
  open: (peer: string, signal: AbortSignal, hint: unknown) => Promise<Stream>
  /** Largest frame, both ways. */
  maxFrameBytes: number
  /** Reader buffer (default: the length-prefix reader's own). */
  maxBufferSize?: number
  /** A link that carried no frame for this long is closed. */
  idleMs: number
  /** See the file's head. */
  onFailure: 'drop' | 'fresh-stream'
  /** Frames queued per peer before `enqueue` drops (default: unbounded). */
  maxQueuedFrames?: number
  /** Bytes queued per peer before `enqueue` drops (default: unbounded). */
  maxQueuedBytes?: number
  /** Time allowed to open a stream (dial included). */
  openTimeoutMs: number
  /**
   * Time allowed for one write (its wait for the stream's 'drain'). Without
   * it the wait has no signal; stop() aborts the stream instead, which ends
   * the wait.
   */
  writeTimeoutMs?: number
  /** Frames written at once (writeV). Default 1. */
  batch?: number
  /** Waits before reopening after failures ('drop'). */
  backoffMs?: number[]
}

interface Frame { bytes: Uint8Array, done?: (err?: Error) => void }

interface Link {
  stream: Stream
  writing: boolean
  idle: NodeJS.Timeout | undefined
}

interface Peer {
  link: Link | undefined
  queue: Frame[]
  bytes: number
  /** 'drop': the peer's writer is opening a stream or backing off. */
  connecting: boolean
  failures: number
}

export class PeerLinks {
  readonly bytes = { in: 0, out: 0 }
  /** Frames dropped: a full queue, or a failed stream ('drop'). */
  dropped = 0
  private ac = new AbortController()
  private readonly peers = new Map<string, Peer>()
  private readonly inbound = new Set<Stream>()
  private readonly outbound = new Set<Stream>()

  constructor (private readonly o: PeerLinksInit) {}

  /** After stop(), makes the links usable again. */
  start (): void { if (this.ac.signal.aborted) this.ac = new AbortController() }

  /** Aborts every stream, opening or open, both ways, and fails what is queued with `err`. */
  stop (err: Error = new Error('links stopped')): void {
    if (this.ac.signal.aborted) return
    this.ac.abort(err)
    for (const [id, p] of [...this.peers]) {
      if (p.link !== undefined) this.dropLink(id, p, p.link, err)
      for (const f of p.queue.splice(0)) f.done?.(err)
      p.bytes = 0
    }
    for (const s of [...this.outbound, ...this.inbound]) s.abort(err)
    this.outbound.clear()
    this.inbound.clear()
    this.peers.clear()
  }

  /** Between stop() and start(). */
  get stopped (): boolean { return this.ac.signal.aborted }

  private peer (id: string): Peer {
    let p = this.peers.get(id)
    if (p === undefined) { p = { link: undefined, queue: [], bytes: 0, connecting: false, failures: 0 }; this.peers.set(id, p) }
    return p
  }

  /**
   * Writes frames in lpStream's framing as one chunk and waits for the
   * stream's drain when it asks for one: QUIC streams ask after every send,
   * and lpStream's write waited through p-event, which builds listeners,
   * closures and promises per write; onDrain() shares one promise per drain.
   */
  private async write (stream: Stream, frames: Uint8Array[], signal?: AbortSignal): Promise<void> {
    if (stream.send(frameAll(frames))) return
    const opts: AbortOptions = signal !== undefined ? { signal } : this.o.writeTimeoutMs !== undefined ? { signal: AbortSignal.any([AbortSignal.timeout(this.o.writeTimeoutMs), this.ac.signal]) } : {}
    await stream.onDrain(opts)
  }

  /** 'drop': queues a frame for the peer; false when it was dropped (full queue, or stopped). Never throws. */
  enqueue (to: string, bytes: Uint8Array, hint?: unknown): boolean {
    if (this.stopped) return false
    const p = this.peer(to)
    if (p.link !== undefined && !isWritable(p.link.stream)) this.dropLink(to, p, p.link, new Error('stream to peer closed'))
    if (p.queue.length >= (this.o.maxQueuedFrames ?? Infinity) || p.bytes + bytes.byteLength > (this.o.maxQueuedBytes ?? Infinity)) { this.dropped++; return false }
    p.queue.push({ bytes })
    p.bytes += bytes.byteLength
    if (p.link !== undefined && isWritable(p.link.stream)) this.pump(to, p, p.link)
    else if (!p.connecting) void this.connect(to, p, hint)
    return true
  }

  /** 'drop': the peer's one writer opens a stream (backing off after failures) while frames wait. */
  private async connect (to: string, p: Peer, hint: unknown): Promise<void> {
    p.connecting = true
    while (p.queue.length > 0 && !this.stopped && p.link === undefined) {
      let stream: Stream | undefined
      try {
        stream = await this.o.open(to, AbortSignal.any([this.ac.signal, AbortSignal.timeout(this.o.openTimeoutMs)]), hint)
        if (this.stopped) { stream.abort(toError(this.ac.signal.reason)); break }
        p.failures = 0
        this.adopt(to, p, stream)
      } catch (err) {
        stream?.abort(toError(err))
        this.failQueued(p)
        if (this.stopped) break
        const backoff = this.o.backoffMs ?? [0]
        const wait = backoff[Math.min(p.failures, backoff.length - 1)] as number
        p.failures++
        await new Promise(resolve => setTimeout(resolve, wait))
      }
    }
    p.connecting = false
    if (p.link !== undefined && p.queue.length > 0) this.pump(to, p, p.link)
  }

  /** 'drop': after a failed link, waits before the peer's writer reopens. */
  private async backOff (to: string, p: Peer): Promise<void> {
    p.connecting = true
    const backoff = this.o.backoffMs ?? [0]
    const wait = backoff[Math.min(p.failures, backoff.length - 1)] as number
    p.failures++
    await new Promise(resolve => setTimeout(resolve, wait))
    p.connecting = false
    if (p.queue.length > 0 && !this.stopped) void this.connect(to, p, undefined)
  }

  /** 'drop': what was queued is dropped (the user resends from its own state). */
  private failQueued (p: Peer): void {
    this.dropped += p.queue.length
    p.queue = []
    p.bytes = 0
  }

  /**
   * 'fresh-stream': sends one frame; resolves once written, rejects when it
   * could not be (dial, stream or write error, timeout, stop).
   */
  async send (to: string, bytes: Uint8Array, hint?: unknown): Promise<void> {
    if (this.stopped) throw toError(this.ac.signal.reason)
    const p = this.peers.get(to)
    const link = p?.link
    if (p !== undefined && link !== undefined && isWritable(link.stream)) {
      await new Promise<void>((resolve, reject) => {
        p.queue.push({ bytes, done: (err) => { if (err === undefined) resolve(); else reject(err) } })
        p.bytes += bytes.byteLength
        this.pump(to, p, link)
      })
      return
    }
    const signal = AbortSignal.any([AbortSignal.timeout(Math.max(this.o.openTimeoutMs, this.o.writeTimeoutMs ?? 0)), this.ac.signal])
    const stream = await this.o.open(to, signal, hint)
    this.outbound.add(stream)
    try {
      await this.write(stream, [bytes], signal)
      this.bytes.out += bytes.byteLength
    } catch (err) {
      this.outbound.delete(stream)
      stream.abort(toError(err))
      throw err
    }
    this.outbound.delete(stream)
    const current = this.peers.get(to)?.link
    if (!this.stopped && (current === undefined || !isWritable(current.stream))) {
      const stale = this.peers.get(to)
      if (stale !== undefined && current !== undefined) this.dropLink(to, stale, current, new Error('stream to peer closed'))
      this.adopt(to, this.peer(to), stream)
    } else {
      await stream.close({ signal }).catch(() => { stream.abort(new Error('close timed out')) })
    }
  }

  private adopt (to: string, p: Peer, stream: Stream): void {
    const link: Link = { stream, writing: false, idle: undefined }
    p.link = link
    this.outbound.add(stream)
    stream.addEventListener('close', () => { if (p.link === link) this.dropLink(to, p, link, new Error('stream to peer closed')) }, { once: true })
    if (p.queue.length > 0) this.pump(to, p, link)
    else this.armIdle(to, p, link)
  }

  /** Writes the peer's queued frames in order on its link; a failed write ends the link. */
  private pump (to: string, p: Peer, link: Link): void {
    if (link.writing) return
    link.writing = true
    if (link.idle !== undefined) { clearTimeout(link.idle); link.idle = undefined }
    void (async () => {
      let batch: Frame[] = []
      try {
        while (p.queue.length > 0 && p.link === link && !this.stopped) {
          batch = p.queue.splice(0, this.o.batch ?? 1)
          for (const f of batch) p.bytes -= f.bytes.byteLength
          await this.write(link.stream, batch.map(f => f.bytes))
          for (const f of batch) { this.bytes.out += f.bytes.byteLength; f.done?.() }
          batch = []
        }
        link.writing = false
        if (p.link === link) this.armIdle(to, p, link)
      } catch (err) {
        link.writing = false
        const e = toError(err)
        for (const f of batch) f.done?.(e)
        if (this.o.onFailure === 'drop') this.dropped += batch.length
        this.dropLink(to, p, link, e)
      }
    })()
  }

  private armIdle (to: string, p: Peer, link: Link): void {
    if (link.idle !== undefined) clearTimeout(link.idle)
    link.idle = setTimeout(() => {
      link.idle = undefined
      if (link.writing || p.queue.length > 0 || p.link !== link) return
      p.link = undefined
      this.outbound.delete(link.stream)
      if (this.peers.get(to) === p && !p.connecting) this.peers.delete(to)
      link.stream.close({ signal: AbortSignal.timeout(Math.max(this.o.openTimeoutMs, this.o.writeTimeoutMs ?? 0)) }).catch(() => { link.stream.abort(new Error('close timed out')) })
    }, this.o.idleMs)
    link.idle.unref()
  }

  /**
   * Forgets a link and aborts its stream. What was queued is failed when
   * stopping; otherwise 'drop' drops it and 'fresh-stream' sends each frame
   * on a stream of its own.
   */
  private dropLink (to: string, p: Peer, link: Link, err: Error): void {
    if (p.link === link) p.link = undefined
    if (link.idle !== undefined) { clearTimeout(link.idle); link.idle = undefined }
    this.outbound.delete(link.stream)
    if (link.stream.status === 'open') link.stream.abort(err)
    if (this.stopped) return
    if (this.o.onFailure === 'drop') {
      this.failQueued(p)
      if (!p.connecting) void this.backOff(to, p)
      return
    }
    const queued = p.queue.splice(0)
    p.bytes = 0
    if (this.peers.get(to) === p) this.peers.delete(to)
    for (const f of queued) this.send(to, f.bytes).then(() => { f.done?.() }, (e: unknown) => { f.done?.(toError(e)) })
  }

  /**
   * Inbound: hands each frame to `onFrame` until the sender closes the
   * stream between frames or `onFrame` returns false (resolves) or something else ends it (throws:
   * classify with classifyEnd). Without a frame for `idleMs`, when given, it
   * throws a TimeoutError. The caller closes or aborts the stream.
   *
   * Frames are cut from the stream's 'message' events as they come, with no
   * promise, signal or exception per frame (lpStream's reader awaited each
   * length byte, raced the signal each time, and threw a RangeError for every
   * length longer than one byte: a fifth of a Raft follower's CPU per write).
   */
  async read (stream: Stream, onFrame: (frame: Uint8Array) => boolean | void, opts: { idleMs?: number } = {}): Promise<void> {
    if (this.stopped) throw toError(this.ac.signal.reason)
    this.inbound.add(stream)
    try {
      await new Promise<void>((resolve, reject) => {
        const cutter = new FrameCutter(this.o.maxFrameBytes, this.o.maxBufferSize ?? DEFAULT_READ_BUFFER_BYTES)
        let idle: NodeJS.Timeout | undefined
        let lastFrame = performance.now()
        let done = false
        const finish = (err?: Error): void => {
          if (done) return
          done = true
          stream.removeEventListener('message', onMessage)
          stream.removeEventListener('end', onEnd)
          stream.removeEventListener('close', onClose)
          this.ac.signal.removeEventListener('abort', onAbort)
          if (idle !== undefined) clearTimeout(idle)
          if (err === undefined) resolve()
          else reject(err)
        }
        const onMessage = (evt: StreamMessageEvent): void => {
          if (done) return
          try {
            const frames = cutter.push(evt.data instanceof Uint8Array ? evt.data : evt.data.subarray())
            if (frames.length > 0) lastFrame = performance.now()
            for (const frame of frames) {
              this.bytes.in += frame.byteLength
              if (onFrame(frame) === false) { finish(); return }
            }
          } catch (err) {
            finish(toError(err))
          }
        }
        // No more data: the sender closed its end (a clean end; what is left unframed is dropped), or a reset or abort.
        const onEnd = (): void => {
          if (stream.status === 'reset') finish(named('StreamResetError', 'stream reset by the peer'))
          else if (stream.status === 'aborted') finish(named('AbortError', 'stream aborted'))
          else finish()
        }
        const onClose = (evt: Event): void => {
          const err = (evt as Event & { error?: Error }).error
          finish(err)
        }
        const onAbort = (): void => { finish(named('AbortError', `read aborted: ${toError(this.ac.signal.reason).message}`)) }
        if (opts.idleMs !== undefined) {
          const idleMs = opts.idleMs
          const check = (): void => {
            const left = lastFrame + idleMs - performance.now()
            if (left <= 0) finish(named('TimeoutError', `no frame within ${idleMs} ms`))
            else idle = setTimeout(check, left)
          }
          idle = setTimeout(check, idleMs)
        }
        this.ac.signal.addEventListener('abort', onAbort, { once: true })
        stream.addEventListener('message', onMessage)
        stream.addEventListener('end', onEnd)
        stream.addEventListener('close', onClose)
        // Data buffered before the listener is dispatched in a microtask (queued above), then this check runs.
        queueMicrotask(() => {
          if (stream.readableEnded || (stream.status !== 'open' && stream.readBufferLength === 0)) onEnd()
        })
      })
    } finally {
      this.inbound.delete(stream)
    }
  }
}
