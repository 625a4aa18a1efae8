// The `Host` check of the agent's own HTTP listeners (API, registry mirror):
// a web page that rebinds its DNS name to 127.0.0.1 reaches a loopback
// listener with its own name in `Host`; answering only to the listener's
// address, loopback names and configured names keeps such pages out.
import type { Server } from 'node:http'
import { isIP, type AddressInfo } from 'node:net'
import { networkInterfaces } from 'node:os'

/** A wildcard listener's interface addresses are re-read at most this often. */
export const INTERFACE_CACHE_MS = 10_000

/** The host name of a `Host` header (`name:port`, `[v6]:port`), lower case; undefined when malformed. */
export function hostHeaderName (header: string): string | undefined {
  const h = header.trim().toLowerCase()
  if (h === '' || h.length > 300) return undefined
  if (h.startsWith('[')) {
    const m = /^\[([0-9a-f:.]+)\](?::(\d{1,5}))?$/.exec(h)
    return m === null ? undefined : m[1]
  }
  const m = /^([a-z0-9._-]+)(?::(\d{1,5}))?$/.exec(h)
  return m === null ? undefined : m[1]
}

function isLoopbackName (name: string): boolean {
  return name === 'localhost' || name.endsWith('.localhost') || name === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name)
}

/**
 * Decides whether a request's `Host` names this listener: a loopback name
 * or address, the address it is bound to (any of this machine's interface
 * addresses when bound to 0.0.0.0 or ::), or one of `names` from config.
 */
export class HostCheck {
  private readonly names: Set<string>
  private bound: string | undefined
  private interfaces: { at: number, addrs: Set<string> } | undefined

  constructor (names: string[] = []) {
    this.names = new Set(names.map(n => n.toLowerCase()))
  }

  /** The address the listener is bound to (from `server.address()`). */
  bind (address: string): void {
    this.bound = address.toLowerCase()
  }

  allows (header: string | undefined): boolean {
    if (header === undefined) return false
    const name = hostHeaderName(header)
    if (name === undefined) return false
    if (isLoopbackName(name) || this.names.has(name)) return true
    if (isIP(name) === 0 || this.bound === undefined) return false
    if (name === this.bound) return true
    if (this.bound === '0.0.0.0' || this.bound === '::') return this.interfaceAddrs().has(name)
    return false
  }

  private interfaceAddrs (): Set<string> {
    const now = Date.now()
    if (this.interfaces === undefined || now - this.interfaces.at > INTERFACE_CACHE_MS) {
      const addrs = new Set<string>()
      for (const list of Object.values(networkInterfaces())) {
        for (const a of list ?? []) addrs.add(a.address.toLowerCase().replace(/%.*$/, ''))
      }
      this.interfaces = { at: now, addrs }
    }
    return this.interfaces.addrs
  }
}

/**
 * Binds `server` to host:port, tells `hosts` the address it got, and
 * returns the listener's base URL (`http://127.0.0.1:5050`, `http://[::1]:9000`).
 */
export async function listenHttp (server: Server, host: string, port: number, hosts: HostCheck): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
  const addr = server.address() as AddressInfo
  hosts.bind(addr.address)
  return `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`
}

/** Closes a listener now: open keep-alive connections included, so a stop never waits on an idle client. */
export async function closeHttp (server: Server | undefined): Promise<void> {
  if (server === undefined) return
  server.closeAllConnections()
  await new Promise<void>(resolve => server.close(() => resolve()))
}
