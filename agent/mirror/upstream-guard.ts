// What the mirror may fetch from: anyone who reaches the mirror makes this
// node send requests, so every URL it fetches — the upstream, each redirect
// hop, a token realm — must be http(s) without userinfo, and its host's
// address (the literal, or every address its name resolves to) outside
// loopback, link-local and private ranges unless the config names that host
// in `[mirror] allow_private_hosts`. The check runs twice: before each
// fetch (a clear error naming the URL), and on the addresses the connection
// really dials (a name that answered a public address to the first lookup
// and 127.0.0.1 to the next, DNS rebinding with TTL 0, is refused there).
import { lookup as dnsLookup } from 'node:dns/promises'
import { lookup as dnsLookupCb, type LookupAddress, type LookupAllOptions, type LookupOptions } from 'node:dns'
import { BlockList, isIP } from 'node:net'
import type { Agent as UndiciAgent, fetch as UndiciFetch } from 'undici'
import { UpstreamAddressRefusedError } from '../../p2p/content/errors.js'

/** Ranges no mirror fetch reaches by default: loopback, private, link-local, CGNAT, multicast, reserved, documentation. */
const INTERNAL = new BlockList()
for (const [net, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24],
  ['224.0.0.0', 4], ['240.0.0.0', 4]
] as const) INTERNAL.addSubnet(net, bits, 'ipv4')
for (const [net, bits] of [
  ['::', 96], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8], ['2001:db8::', 32], ['64:ff9b::', 96], ['100::', 64]
] as const) INTERNAL.addSubnet(net, bits, 'ipv6')

/** True for an IP address in a loopback, private, link-local or otherwise non-public range. */
export function isInternalAddress (address: string): boolean {
  const a = address.toLowerCase().replace(/^\[|\]$/g, '').replace(/%.*$/, '')
  const family = isIP(a)
  if (family === 4) return INTERNAL.check(a, 'ipv4')
  if (family !== 6) return false
  // Node's BlockList checks IPv4-mapped addresses (::ffff:7f00:1) against the IPv4 ranges.
  return INTERNAL.check(a, 'ipv6')
}

export type Lookup = (host: string) => Promise<string[]>

const systemLookup: Lookup = async host => (await dnsLookup(host, { all: true, verbatim: true })).map(r => r.address)

/** The `host[:port]` of a URL as `allow_private_hosts` entries name it (default ports spelled out). */
function hostKeys (url: URL): [string, string] {
  const port = url.port !== '' ? url.port : url.protocol === 'https:' ? '443' : '80'
  const name = url.hostname.toLowerCase()
  return [name, `${name}:${port}`]
}

/**
 * Whether `[mirror] allow_private_hosts` lets the mirror reach `url`'s host
 * on a private address: an entry `host:port` names that port only, `host`
 * every port, `*` every host.
 */
export function privateHostAllowed (entries: string[], url: URL): boolean {
  if (entries.length === 0) return false
  const [name, withPort] = hostKeys(url)
  return entries.some(e => { const x = e.toLowerCase(); return x === '*' || x === name || x === withPort })
}

export interface UpstreamGuardInit {
  /** Hosts (`host[:port]`, `*`) that may be on loopback, private and link-local addresses (`[mirror] allow_private_hosts`). */
  privateHosts: string[]
  lookup?: Lookup
}

/** Checks each URL the mirror's registry client is about to fetch; see RegistryClientOptions.guard. */
export class UpstreamGuard {
  private readonly lookup: Lookup

  constructor (private readonly init: UpstreamGuardInit) {
    this.lookup = init.lookup ?? systemLookup
  }

  async check (url: URL): Promise<void> {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UpstreamAddressRefusedError(`refusing to fetch ${url.protocol} URL ${url.host} for the mirror: only http and https`)
    if (url.username !== '' || url.password !== '') throw new UpstreamAddressRefusedError(`refusing to fetch from ${url.host} for the mirror: the URL carries credentials`)
    if (privateHostAllowed(this.init.privateHosts, url)) return
    const host = url.hostname.replace(/^\[|\]$/g, '')
    const addrs = isIP(host) !== 0 ? [host] : host === 'localhost' || host.endsWith('.localhost') ? ['127.0.0.1'] : await this.resolve(host)
    const bad = addrs.find(isInternalAddress)
    if (bad !== undefined) {
      throw new UpstreamAddressRefusedError(`refusing to fetch from ${url.host} for the mirror: ${bad === host ? 'it is' : `it resolves to ${bad},`} a loopback, private or link-local address (list it in [mirror] allow_private_hosts to allow it)`)
    }
  }

  private async resolve (host: string): Promise<string[]> {
    try {
      return await this.lookup(host)
    } catch (err) {
      // Not left to the fetch: its own lookup could answer differently.
      throw new UpstreamAddressRefusedError(`cannot resolve ${host} to check its address: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
    }
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void
type LookupFn = (hostname: string, options: LookupAllOptions, callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void

/** Whether `allow_private_hosts` names this host on some port (the connection's lookup does not see the port; the check before the fetch did). */
function nameAllowed (entries: string[], hostname: string): boolean {
  const name = hostname.toLowerCase()
  return entries.some(e => { const x = e.toLowerCase(); return x === '*' || x === name || x.startsWith(`${name}:`) })
}

/**
 * A `lookup` for the sockets the mirror's fetches open: it resolves the name
 * and fails the connection if any answer is internal, unless the config
 * allows that host. `resolve` is for tests (dns.lookup otherwise).
 */
export function guardedLookup (privateHosts: string[], resolve: LookupFn = dnsLookupCb as unknown as LookupFn): (hostname: string, options: LookupOptions, callback: LookupCallback) => void {
  return (hostname, options, callback) => {
    resolve(hostname, { ...options, all: true }, (err, addresses) => {
      if (err !== null) { callback(err, []); return }
      const bad = nameAllowed(privateHosts, hostname) ? undefined : addresses.find(a => isInternalAddress(a.address))
      if (bad !== undefined) {
        callback(new UpstreamAddressRefusedError(`refusing to connect to ${hostname} for the mirror: it now resolves to ${bad.address}, a loopback, private or link-local address (list it in [mirror] allow_private_hosts to allow it)`), [])
        return
      }
      if (options.all === true) { callback(null, addresses); return }
      const first = addresses[0]
      if (first === undefined) { callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), []); return }
      callback(null, first.address, first.family)
    })
  }
}

/**
 * `fetch` whose connections dial only addresses the guard allows; for the
 * mirror's registry client. undici (1 MB of code) loads on the first fetch:
 * an agent whose mirror never fetches upstream does not hold it.
 */
export function guardedFetch (privateHosts: string[], resolve?: LookupFn): typeof fetch {
  let client: Promise<{ dispatcher: UndiciAgent, fetch: typeof UndiciFetch }> | undefined
  return (async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    client ??= import('undici').then(u => ({ dispatcher: new u.Agent({ connect: { lookup: guardedLookup(privateHosts, resolve) } }), fetch: u.fetch }))
    const { dispatcher, fetch: undiciFetch } = await client
    return await undiciFetch(input as Parameters<typeof UndiciFetch>[0], { ...(init as Parameters<typeof UndiciFetch>[1]), dispatcher })
  }) as unknown as typeof fetch
}
