// The agent's DNS server, UDP and TCP on one address (default
// 127.0.0.1:8600): cluster names answered from the in-memory catalog
// (dns-answer.ts), everything else forwarded to the host's resolvers. Every
// buffer and queue is bounded; a malformed or hostile packet costs one
// FORMERR or nothing, and never the process.
import { createSocket, type Socket } from 'node:dgram'
import { createServer, connect, type Server, type Socket as TcpSocket } from 'node:net'
import { readFile } from 'node:fs/promises'
import { isIP, isIPv6 } from 'node:net'
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns'
import { answerQuery, headerOnlyReply, type ServiceLookup } from './dns-answer.js'
import type { Logger } from '../logger.js'

export const DEFAULT_DNS_LISTEN = '127.0.0.1:8600'
/** Forwarded queries in flight at most; beyond, SERVFAIL at once. */
export const MAX_FORWARDS = 256
export const FORWARD_TIMEOUT_MS = 2000
export const MAX_TCP_CONNECTIONS = 64
export const TCP_IDLE_MS = 10_000
/** Bytes buffered per TCP connection at most (one max-size message plus its prefix). */
const MAX_TCP_BUFFER = 65_537
const SERVFAIL = 2
/** Encoded answers kept per (query without its id, transport); cleared when full. */
const MAX_CACHED_ANSWERS = 4096

export class DnsListenError extends Error {
  override name = 'DnsListenError'
}

export interface Upstream { host: string, port: number }

export interface DnsServerInit {
  listen: string
  upstreams: Upstream[]
  lookup: ServiceLookup
  /** Changes whenever the catalog does: cached answers older than it are not served. */
  version: () => number
  log: Logger
  /** What to do when the address is taken, for the error (default: the [dns] keys). */
  hint?: string
}

/** `nameserver` lines of a resolv.conf, port 53. */
export function parseResolvConf (text: string): Upstream[] {
  const out: Upstream[] = []
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line)
    if (m?.[1] !== undefined) out.push({ host: m[1].replace(/%.*$/, ''), port: 53 })
  }
  return out
}

/** `HOST`, `HOST:PORT`, `[V6]:PORT`. */
export function parseHostPort (text: string, defaultPort: number): Upstream {
  const v6 = /^\[([0-9a-fA-F:.]+)\](?::(\d{1,5}))?$/.exec(text)
  if (v6 !== null) return { host: v6[1] ?? '', port: v6[2] !== undefined ? Number(v6[2]) : defaultPort }
  if (isIPv6(text)) return { host: text, port: defaultPort }
  const i = text.lastIndexOf(':')
  return i < 0 ? { host: text, port: defaultPort } : { host: text.slice(0, i), port: Number(text.slice(i + 1)) }
}

export async function hostResolvers (path = '/etc/resolv.conf'): Promise<Upstream[]> {
  return parseResolvConf(await readFile(path, 'utf8').catch(() => '')) // no resolv.conf: no upstreams, names outside .bolt get SERVFAIL
}

export class DnsServer {
  private udp: Socket | undefined
  private tcp: Server | undefined
  private readonly conns = new Set<TcpSocket>()
  private forwards = 0
  /** Answers to cluster names by the query's bytes after its id: a repeat costs a copy, not a decode and encode. */
  private readonly cache = new Map<string, Buffer>()
  private cacheVersion = -1
  private readonly ac = new AbortController()
  address: { host: string, port: number } | undefined
  readonly stats = { queries: 0, answered: 0, forwarded: 0, dropped: 0, forwardFailures: 0 }

  constructor (private readonly o: DnsServerInit) {}

  /** Binds UDP, then TCP on the same port (port 0: a free one, both sides). */
  async start (): Promise<void> {
    const { host, port } = parseHostPort(this.o.listen, 8600)
    let lastErr: Error | undefined
    for (let attempt = 0; attempt < (port === 0 ? 8 : 1); attempt++) {
      try {
        await this.bind(host, port)
        return
      } catch (err) {
        lastErr = err as Error
        await this.closeSockets()
      }
    }
    throw new DnsListenError(`cannot serve DNS on ${this.o.listen}: ${lastErr?.message ?? 'unknown'} (${this.o.hint ?? 'set [dns] listen to another address, or enabled = false'})`)
  }

  private async bind (host: string, port: number): Promise<void> {
    const udp = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', lookup: literalLookup })
    this.udp = udp
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject)
      udp.bind(port, host, () => { udp.off('error', reject); resolve() })
    })
    udp.on('error', (err) => { this.o.log.warn({ err: err.message }, 'dns: UDP socket error') })
    udp.on('message', (msg, rinfo) => { this.onUdp(msg, rinfo.address, rinfo.port) })
    const bound = udp.address().port
    const tcp = createServer({ pauseOnConnect: false }, (sock) => { this.onTcp(sock) })
    tcp.maxConnections = MAX_TCP_CONNECTIONS
    this.tcp = tcp
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject)
      tcp.listen(bound, host, () => { tcp.off('error', reject); resolve() })
    })
    tcp.on('error', (err) => { this.o.log.warn({ err: err.message }, 'dns: TCP listener error') })
    this.address = { host, port: bound }
  }

  get url (): string { return this.address === undefined ? '' : `${this.address.host.includes(':') ? `[${this.address.host}]` : this.address.host}:${this.address.port}` }

  async stop (): Promise<void> {
    this.ac.abort()
    for (const c of this.conns) c.destroy()
    this.conns.clear()
    await this.closeSockets()
  }

  private async closeSockets (): Promise<void> {
    const udp = this.udp
    const tcp = this.tcp
    this.udp = undefined
    this.tcp = undefined
    if (udp !== undefined) await new Promise<void>(resolve => { try { udp.close(() => resolve()) } catch { resolve() /* never bound: nothing to close */ } })
    if (tcp !== undefined) await new Promise<void>(resolve => { tcp.close(() => resolve()) })
  }

  /** A cached answer to this query, with its id, or undefined. Synchronous: the hot path of a busy name. */
  private cached (msg: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined {
    const version = this.o.version()
    if (version !== this.cacheVersion) { this.cache.clear(); this.cacheVersion = version; return undefined }
    if (msg.byteLength < 12 || msg.byteLength > 512) return undefined
    const hit = this.cache.get(transport[0] + msg.toString('latin1', 2))
    if (hit === undefined) return undefined
    this.stats.queries++
    this.stats.answered++
    const reply = Buffer.from(hit)
    msg.copy(reply, 0, 0, 2) // the query's id
    return reply
  }

  /** One query, from either transport; resolves to the reply bytes or undefined (dropped). */
  private async handle (msg: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
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

  private onUdp (msg: Buffer, host: string, port: number): void {
    const hit = this.cached(msg, 'udp')
    if (hit !== undefined) { this.udp?.send(hit, port, host); return }
    void this.handle(msg, 'udp').then(reply => {
      if (reply !== undefined && this.udp !== undefined) this.udp.send(reply, port, host)
    })
  }

  private onTcp (sock: TcpSocket): void {
    this.conns.add(sock)
    sock.setTimeout(TCP_IDLE_MS, () => { sock.destroy() })
    sock.on('close', () => { this.conns.delete(sock) })
    sock.on('error', () => { sock.destroy() })
    let buf = Buffer.alloc(0)
    let busy = false
    const pump = async (): Promise<void> => {
      if (busy) return
      busy = true
      try {
        while (buf.byteLength >= 2) {
          const len = buf.readUInt16BE(0)
          if (buf.byteLength < 2 + len) break
          const msg = buf.subarray(2, 2 + len)
          buf = buf.subarray(2 + len)
          const reply = await this.handle(Buffer.from(msg), 'tcp')
          if (reply === undefined) { sock.destroy(); return }
          const head = Buffer.alloc(2)
          head.writeUInt16BE(reply.byteLength)
          if (!sock.destroyed) sock.write(Buffer.concat([head, reply]))
        }
      } finally {
        busy = false
      }
    }
    sock.on('data', (chunk: Buffer) => {
      if (buf.byteLength + chunk.byteLength > MAX_TCP_BUFFER) { sock.destroy(); return }
      buf = Buffer.concat([buf, chunk])
      void pump()
    })
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
function literalLookup (hostname: string, options: LookupOneOptions, callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
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
