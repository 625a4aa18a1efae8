// The agent's DNS server, UDP and TCP on one address (default
// 127.0.0.1:8600): cluster names answered from the in-memory catalog
// (dns-answer.ts), everything else forwarded to the host's resolvers
// (dns-core.ts). Every buffer and queue is bounded; a malformed or hostile
// packet costs one FORMERR or nothing, and never the process. Under load,
// UDP threads (dns-worker.ts) join the event loop's socket on the same port.
import { createSocket, type Socket } from 'node:dgram'
import { createServer, type Server, type Socket as TcpSocket } from 'node:net'
import { readFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { isIPv6 } from 'node:net'
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads'
import { DnsCore, emptyStats, literalLookup, MAX_TCP_BUFFER, type DnsStats, type Upstream } from './dns-core.js'
import type { ServiceLookup } from './dns-answer.js'
import type { DnsWorkerData, FromWorker, Snapshot } from './dns-worker.js'
import type { CatalogEntry } from '../state/services.js'
import type { Logger } from '../logger.js'

export { MAX_FORWARDS, FORWARD_TIMEOUT_MS, type Upstream } from './dns-core.js'
export const DEFAULT_DNS_LISTEN = '127.0.0.1:8600'
export const MAX_TCP_CONNECTIONS = 64
export const TCP_IDLE_MS = 10_000
/** UDP datagrams within one second on the event loop's socket that start the UDP threads. */
export const WORKER_START_QUERIES = 2000
/** UDP threads at most: one fewer than the cores, so the event loop keeps one. */
const MAX_UDP_WORKERS = 2
/** How often the event loop looks for a catalog change to post to its UDP threads (ms). */
const SNAPSHOT_POLL_MS = 50

export class DnsListenError extends Error {
  override name = 'DnsListenError'
}

export interface DnsServerInit {
  listen: string
  upstreams: Upstream[]
  lookup: ServiceLookup
  /** Changes whenever the catalog does: cached answers older than it are not served. */
  version: () => number
  log: Logger
  /** What to do when the address is taken, for the error (default: the [dns] keys). */
  hint?: string
  /**
   * Every service with its entries: given, UDP threads answer from a copy
   * once the event loop's socket is busy (WORKER_START_QUERIES), on Linux
   * with more than one core. `udpWorkers` overrides their number (0: none).
   */
  snapshot?: () => Array<[string, CatalogEntry[]]>
  udpWorkers?: number
}

interface UdpWorker { worker: Worker, snapshots: MessagePort, stats: DnsStats }

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


async function bindUdp (sock: Socket, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject)
    sock.bind(port, host, () => { sock.off('error', reject); resolve() })
  })
}

async function closeUdp (sock: Socket): Promise<void> {
  await new Promise<void>(resolve => { try { sock.close(() => resolve()) } catch { resolve() /* never bound: nothing to close */ } })
}

export class DnsServer {
  private udp: Socket | undefined
  private tcp: Server | undefined
  private readonly conns = new Set<TcpSocket>()
  private readonly core: DnsCore
  private readonly workers: UdpWorker[] = []
  private workersStarted = false
  /** Datagrams in the current one-second window, and when it began: what starts the UDP threads. */
  private windowCount = 0
  private windowStart = 0
  private readonly posted = new Int32Array(new SharedArrayBuffer(4))
  private postedVersion = Number.NaN
  private poll: NodeJS.Timeout | undefined
  address: { host: string, port: number } | undefined

  constructor (private readonly o: DnsServerInit) {
    this.core = new DnsCore({ upstreams: o.upstreams, lookup: o.lookup, version: o.version, log: o.log })
  }

  /** Counters of the event loop and its UDP threads (theirs as of their last report, each second). */
  get stats (): DnsStats {
    const s = { ...this.core.stats }
    for (const w of this.workers) for (const k of Object.keys(s) as Array<keyof DnsStats>) s[k] += w.stats[k]
    return s
  }

  /** Each running UDP thread's counters, as of its last report. */
  get threadStats (): DnsStats[] { return this.workers.map(w => w.stats) }

  /** UDP threads this server may start: none without a snapshot, off Linux (no SO_REUSEPORT in dgram) or on one core. */
  private workerCount (): number {
    if (this.o.snapshot === undefined) return 0
    if (this.o.udpWorkers !== undefined) return this.o.udpWorkers
    return process.platform === 'linux' ? Math.max(0, Math.min(MAX_UDP_WORKERS, availableParallelism() - 1)) : 0
  }

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
    const type = isIPv6(host) ? 'udp6' : 'udp4'
    const reusePort = this.workerCount() > 0
    if (reusePort) {
      // A plain bind first: the port must be free of every other socket, SO_REUSEPORT or not, so two agents
      // (one user) never split one port's queries between them; what holds the port after us fails this too.
      const probe = createSocket({ type })
      try {
        await bindUdp(probe, port, host)
        port = probe.address().port
      } finally {
        await closeUdp(probe)
      }
    }
    const udp = createSocket({ type, lookup: literalLookup, reusePort })
    this.udp = udp
    await bindUdp(udp, port, host)
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
    this.core.stop()
    clearInterval(this.poll)
    this.workersStarted = true // none starts after stop
    await Promise.all(this.workers.map(async w => { w.snapshots.close(); await w.worker.terminate() }))
    for (const c of this.conns) c.destroy()
    this.conns.clear()
    await this.closeSockets()
  }

  private async closeSockets (): Promise<void> {
    const udp = this.udp
    const tcp = this.tcp
    this.udp = undefined
    this.tcp = undefined
    if (udp !== undefined) await closeUdp(udp)
    if (tcp !== undefined) await new Promise<void>(resolve => { tcp.close(() => resolve()) })
  }

  private onUdp (msg: Buffer, host: string, port: number): void {
    if (!this.workersStarted) this.countLoad()
    else if (this.workers.length > 0) this.postSnapshot()
    const hit = this.core.cached(msg, 'udp')
    if (hit !== undefined) { this.udp?.send(hit, port, host); return }
    void this.core.handle(msg, 'udp').then(reply => {
      if (reply !== undefined && this.udp !== undefined) this.udp.send(reply, port, host)
    })
  }

  /** Starts the UDP threads once one second brings WORKER_START_QUERIES datagrams. */
  private countLoad (): void {
    if (++this.windowCount < WORKER_START_QUERIES) return
    const now = performance.now()
    if (now - this.windowStart < 1000 && this.workerCount() > 0 && this.address !== undefined) this.startWorkers(this.address)
    this.windowStart = now
    this.windowCount = 0
  }

  private startWorkers (at: { host: string, port: number }): void {
    this.workersStarted = true
    for (let i = 0; i < this.workerCount(); i++) {
      const { port1, port2 } = new MessageChannel()
      const data: DnsWorkerData = { host: at.host, port: at.port, upstreams: this.o.upstreams, snapshots: port2, shared: this.posted.buffer as SharedArrayBuffer }
      const worker = new Worker(new URL('./dns-worker.js', import.meta.url), { workerData: data, transferList: [port2] })
      const w: UdpWorker = { worker, snapshots: port1, stats: emptyStats() }
      this.workers.push(w)
      worker.on('message', (m: FromWorker) => {
        if (m.t === 'stats') w.stats = m.stats
        else if (m.t === 'ready') this.o.log.info({ dns: this.url }, 'dns: a UDP thread serves')
        else if (m.t === 'warn') this.o.log.warn(m.obj, m.msg)
        else if (m.t === 'error') this.o.log.warn({ err: m.message, dns: this.url }, 'dns: a UDP thread could not bind; the event loop answers alone')
      })
      worker.on('error', (err) => { this.o.log.warn({ err: err.message, dns: this.url }, 'dns: a UDP thread failed') })
      worker.on('exit', () => { const i = this.workers.indexOf(w); if (i >= 0) this.workers.splice(i, 1) })
    }
    this.postedVersion = Number.NaN
    this.postSnapshot()
    this.poll = setInterval(() => { this.postSnapshot() }, SNAPSHOT_POLL_MS).unref()
    this.o.log.info({ dns: this.url, threads: this.workers.length }, 'dns: busy, UDP threads started')
  }

  /** Posts the catalog to the UDP threads when its version moved, then flags the version they must catch up to. */
  private postSnapshot (): void {
    const version = this.o.version() | 0
    if (version === this.postedVersion || this.o.snapshot === undefined) return
    const snap: Snapshot = { version, services: this.o.snapshot() }
    for (const w of this.workers) w.snapshots.postMessage(snap)
    this.postedVersion = version
    Atomics.store(this.posted, 0, version)
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
          const reply = await this.core.handle(Buffer.from(msg), 'tcp')
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
}
