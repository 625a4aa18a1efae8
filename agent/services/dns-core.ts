// The socket-free half of the agent's DNS server, shared by the event loop
// and the UDP worker thread (dns-worker.ts): answers cluster names from a
// catalog view with a per-query-bytes cache of encoded answers, and forwards
// everything else to the host's resolvers, bounded in flight.
import { createSocket } from 'node:dgram'
import { connect, isIP, isIPv6 } from 'node:net'
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns'
import { answerQuery, headerOnlyReply, type ServiceLookup } from './dns-answer.js'

/** Forwarded queries in flight at most; beyond, SERVFAIL at once. */
export const MAX_FORWARDS = 256
export const FORWARD_TIMEOUT_MS = 2000
/** Bytes buffered per TCP connection at most (one max-size message plus its prefix). */
export const MAX_TCP_BUFFER = 65_537
const SERVFAIL = 2
/** Encoded answers kept per (query without its id, transport); cleared when full. */
const MAX_CACHED_ANSWERS = 4096

export interface Upstream { host: string, port: number }

/** What the core logs: a warning with context (the agent's logger, or a worker's relay to it). */
export interface WarnLog { warn: (obj: Record<string, unknown>, msg: string) => void }

export interface DnsCoreInit {
  upstreams: Upstream[]
  lookup: ServiceLookup
  /** Changes whenever the catalog does: cached answers older than it are not served. */
  version: () => number
  log: WarnLog
}

export interface DnsStats { queries: number, answered: number, forwarded: number, dropped: number, forwardFailures: number }

export function emptyStats (): DnsStats { return { queries: 0, answered: 0, forwarded: 0, dropped: 0, forwardFailures: 0 } }

export class DnsCore {
  private forwards = 0
  /** Answers to cluster names by the query's bytes after its id: a repeat costs a copy, not a decode and encode. */
  private readonly cache = new Map<string, Buffer>()
  private cacheVersion = -1
  private readonly ac = new AbortController()
  readonly stats = emptyStats()

  constructor (private readonly o: DnsCoreInit) {}

  stop (): void { this.ac.abort() }

  /** A cached answer to this query, with its id, or undefined. Synchronous: the hot path of a busy name. */
  cached (msg: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined {
    const version = this.o.version()
    if (version !== this.cacheVersion) { this.cache.clear(); this.cacheVersion = version; return undefined }
    if (msg.byteLength < 12 || msg.byteLength > 512) return undefined
    const hit = this.cache.get(transport[0] + msg.toString('latin1', 2))
    if (hit === undefined) return undefined
    this.stats.queries++
    this.stats.answered++
    const reply = Buffer.allocUnsafe(hit.byteLength)
    hit.copy(reply, 2, 2)
    reply[0] = msg[0] ?? 0 // the query's id
    reply[1] = msg[1] ?? 0
    return reply
  }

  /** One query, from either transport; resolves to the reply bytes or undefined (dropped). */
  async handle (msg: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    const hit = this.cached(msg, transport)
    if (hit !== undefined) return hit
    this.stats.queries++
    const key = msg.byteLength >= 12 && msg.byteLength <= 512 ? transport[0] + msg.toString('latin1', 2) : undefined
    let d
    try {
      d = answerQuery(msg, this.o.lookup, transport)
    } catch (err) {
      // answerQuery throws nothing by design (fuzzed); if it ever does, the client still gets an answer.
      this.o.log.warn({ err: (err as Error).message }, 'dns: answering failed')
      return headerOnlyReply(msg, SERVFAIL)
    }
    if (d.kind === 'drop') { this.stats.dropped++; return undefined }
    if (d.kind === 'answer') {
      this.stats.answered++
      if (key !== undefined) {
        if (this.cache.size >= MAX_CACHED_ANSWERS) this.cache.clear()
        this.cache.set(key, d.bytes)
      }
      return d.bytes
    }
    this.stats.forwarded++
    return await this.forward(msg)
  }

  /** Sends the query to each upstream in turn until one answers. SERVFAIL when none does. */
  private async forward (msg: Buffer): Promise<Buffer> {
    if (this.forwards >= MAX_FORWARDS || this.o.upstreams.length === 0) { this.stats.forwardFailures++; return headerOnlyReply(msg, SERVFAIL) }
    this.forwards++
    try {
      for (const u of this.o.upstreams) {
        if (this.ac.signal.aborted) break
        const r = await forwardUdp(msg, u, FORWARD_TIMEOUT_MS, this.ac.signal).catch(() => undefined) // no answer: try the next upstream (SERVFAIL and forwardFailures when none)
        // A truncated UDP answer is fetched again over TCP, so TCP clients get it whole.
        if (r !== undefined && r.byteLength >= 4 && (r.readUInt16BE(2) & 0x0200) !== 0) {
          const full = await forwardTcp(msg, u, FORWARD_TIMEOUT_MS, this.ac.signal).catch(() => undefined) // no TCP answer: return the truncated UDP one
          if (full !== undefined) return full
        }
        if (r !== undefined) return r
      }
      this.stats.forwardFailures++
      return headerOnlyReply(msg, SERVFAIL)
    } finally {
      this.forwards--
    }
  }
}

/**
 * The server only ever sends to the address a datagram came from, an IP
 * literal: answered at once, where dgram's default lookup (dns.lookup) costs
 * a tick per reply. Anything else still goes through dns.lookup.
 */
export function literalLookup (hostname: string, options: LookupOneOptions, callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  const family = isIP(hostname)
  if (family !== 0) { callback(null, hostname, family); return }
  dnsLookup(hostname, options, callback)
}

/** One query to one upstream over UDP: the first reply with the query's id. */
async function forwardUdp (msg: Buffer, u: Upstream, timeoutMs: number, signal: AbortSignal): Promise<Buffer> {
  const sock = createSocket({ type: isIPv6(u.host) ? 'udp6' : 'udp4' })
  const id = msg.readUInt16BE(0)
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('upstream timed out')) }, timeoutMs)
      const onAbort = (): void => { clearTimeout(timer); reject(new Error('stopped')) }
      signal.addEventListener('abort', onAbort, { once: true })
      sock.on('error', (err) => { clearTimeout(timer); signal.removeEventListener('abort', onAbort); reject(err) })
      sock.on('message', (reply, rinfo) => {
        if (rinfo.port !== u.port || reply.byteLength < 12 || reply.readUInt16BE(0) !== id) return // not our answer
        clearTimeout(timer)
        signal.removeEventListener('abort', onAbort)
        resolve(reply)
      })
      sock.send(msg, u.port, u.host)
    })
  } finally {
    sock.close()
  }
}

async function forwardTcp (msg: Buffer, u: Upstream, timeoutMs: number, signal: AbortSignal): Promise<Buffer> {
  return await new Promise<Buffer>((resolve, reject) => {
    const sock = connect({ host: u.host, port: u.port })
    let buf = Buffer.alloc(0)
    const done = (err: Error | undefined, r?: Buffer): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      sock.destroy()
      if (err !== undefined) reject(err); else resolve(r as Buffer)
    }
    const timer = setTimeout(() => { done(new Error('upstream timed out')) }, timeoutMs)
    const onAbort = (): void => { done(new Error('stopped')) }
    signal.addEventListener('abort', onAbort, { once: true })
    sock.on('error', (err) => { done(err) })
    sock.on('connect', () => {
      const head = Buffer.alloc(2)
      head.writeUInt16BE(msg.byteLength)
      sock.write(Buffer.concat([head, msg]))
    })
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      if (buf.byteLength > MAX_TCP_BUFFER) { done(new Error('upstream answer too large')); return }
      if (buf.byteLength >= 2 && buf.byteLength >= 2 + buf.readUInt16BE(0)) done(undefined, buf.subarray(2, 2 + buf.readUInt16BE(0)))
    })
  })
}
