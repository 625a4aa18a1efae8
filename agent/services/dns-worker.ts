// A UDP thread of the agent's DNS server (dns-server.ts starts it once the
// event loop's socket is busy): its own socket on the same address and port
// (SO_REUSEPORT, so the kernel spreads clients over the sockets), answering
// from a snapshot of the catalog that the event loop posts on a port of its
// own and flags by version in shared memory. A query that sees a newer
// version takes the waiting snapshot first, so no stale cached answer is
// served once the event loop has posted the change.
import { createSocket } from 'node:dgram'
import { isIPv6 } from 'node:net'
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads'
import { DnsCore, literalLookup, type Upstream } from './dns-core.js'
import type { CatalogEntry } from '../state/services.js'

export interface DnsWorkerData {
  host: string
  port: number
  upstreams: Upstream[]
  /** Snapshots come here, each with its version: `{ version, services }`. */
  snapshots: MessagePort
  /** [0]: the version of the newest snapshot posted (int32). */
  shared: SharedArrayBuffer
}
export interface Snapshot { version: number, services: Array<[string, CatalogEntry[]]> }
export type FromWorker =
  | { t: 'ready' }
  | { t: 'error', message: string }
  | { t: 'warn', obj: Record<string, unknown>, msg: string }
  | { t: 'stats', stats: DnsCore['stats'] }

const port = parentPort
if (port === null) throw new Error('dns-worker runs only as a worker thread')
const d = workerData as DnsWorkerData
const posted = new Int32Array(d.shared)
let version = Number.NaN
let services = new Map<string, CatalogEntry[]>()

/** Takes every snapshot waiting on the port, keeping the newest. */
function drain (): void {
  for (let m = receiveMessageOnPort(d.snapshots); m !== undefined; m = receiveMessageOnPort(d.snapshots)) {
    const s = m.message as Snapshot
    version = s.version
    services = new Map(s.services)
  }
}

const core = new DnsCore({
  upstreams: d.upstreams,
  lookup: (name) => services.get(name.toLowerCase()) ?? [],
  version: () => {
    if (Atomics.load(posted, 0) !== version) drain()
    return version
  },
  log: { warn: (obj, msg) => { port.postMessage({ t: 'warn', obj, msg } satisfies FromWorker) } }
})
drain()

const udp = createSocket({ type: isIPv6(d.host) ? 'udp6' : 'udp4', lookup: literalLookup, reusePort: true })
let listening = false
udp.on('error', (err) => {
  if (!listening) { port.postMessage({ t: 'error', message: err.message } satisfies FromWorker); udp.close(); return }
  port.postMessage({ t: 'warn', obj: { err: err.message }, msg: 'dns: UDP socket error (worker)' } satisfies FromWorker)
})
udp.on('message', (msg, rinfo) => {
  const hit = core.cached(msg, 'udp')
  if (hit !== undefined) { udp.send(hit, rinfo.port, rinfo.address); return }
  void core.handle(msg, 'udp').then(reply => { if (reply !== undefined) udp.send(reply, rinfo.port, rinfo.address) })
})
udp.once('listening', () => { listening = true; port.postMessage({ t: 'ready' } satisfies FromWorker) })
try {
  udp.bind(d.port, d.host)
} catch (err) {
  port.postMessage({ t: 'error', message: (err as Error).message } satisfies FromWorker)
}
// Counters for the event loop's stats, once a second while the thread lives.
setInterval(() => { port.postMessage({ t: 'stats', stats: core.stats } satisfies FromWorker) }, 1000).unref()
d.snapshots.on('message', (s: Snapshot) => { version = s.version; services = new Map(s.services) })
d.snapshots.unref()
