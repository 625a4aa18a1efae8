// The `-p` option of `run` and the `ports` of stack files: "HOST:CONTAINER[/tcp|udp]"
// or "CONTAINER[/tcp|udp]" (a dynamic host port). One strict parser for both, so a
// typo is one clear line before anything reaches the cluster.
import type { PortRequest } from './scheduler/spec.js'

export class PortOptionError extends Error {
  override name = 'PortOptionError'
}

/** Longest `-p` value looked at (the longest valid one is "65535:65535/tcp"). */
export const MAX_PORT_OPTION_CHARS = 32

function port (text: string, what: string, whole: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new PortOptionError(`-p ${whole}: ${what} ${JSON.stringify(text)} is not a port number (expected HOST:CONTAINER[/tcp|udp] or CONTAINER[/tcp|udp])`)
  const n = Number(text)
  if (n < 1 || n > 65535) throw new PortOptionError(`-p ${whole}: ${what} ${n} is outside 1-65535`)
  return n
}

export function parsePortOption (text: string): PortRequest {
  const cut = text.length > MAX_PORT_OPTION_CHARS ? `${text.slice(0, MAX_PORT_OPTION_CHARS)}...` : text
  // Quoted when it holds anything but printable ASCII: an error stays one line.
  const shown = /^[\x21-\x7e]+$/.test(cut) ? cut : JSON.stringify(cut)
  if (text.length > MAX_PORT_OPTION_CHARS) throw new PortOptionError(`-p ${shown}: too long (expected HOST:CONTAINER[/tcp|udp] or CONTAINER[/tcp|udp])`)
  let rest = text.trim()
  let proto: 'tcp' | 'udp' = 'tcp'
  const slash = rest.indexOf('/')
  if (slash >= 0) {
    const p = rest.slice(slash + 1).toLowerCase()
    if (p !== 'tcp' && p !== 'udp') throw new PortOptionError(`-p ${shown}: protocol ${JSON.stringify(rest.slice(slash + 1))} is neither tcp nor udp`)
    proto = p
    rest = rest.slice(0, slash)
  }
  const parts = rest.split(':')
  if (parts.length === 1) return { container: port(parts[0] as string, 'container port', shown), proto }
  if (parts.length === 2) return { host: port(parts[0] as string, 'host port', shown), container: port(parts[1] as string, 'container port', shown), proto }
  throw new PortOptionError(`-p ${shown}: expected HOST:CONTAINER[/tcp|udp] or CONTAINER[/tcp|udp]`)
}

/** "10.0.0.6:20417->7777/udp", as ps shows a published port. */
export function formatPort (address: string | null, p: { host: number, container: number, proto: string }): string {
  return `${address ?? '?'}:${p.host}->${p.container}/${p.proto}`
}
