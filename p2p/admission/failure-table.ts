// Failed admission proofs counted per source address, not per peer id (a
// new peer id costs nothing). IPv6 sources are grouped by /64, what one host
// is usually given. The table is bounded: the oldest sources are forgotten.
import type { Multiaddr } from '@multiformats/multiaddr'

/** Sources tracked at once. */
export const MAX_SOURCES = 10_000

/** The address a connection comes from, as the key failures are counted under (the relay's for a relayed one). */
export function sourceOf (addr: Multiaddr, fallback: string): string {
  for (const c of addr.getComponents()) {
    if (c.name === 'ip4' && c.value !== undefined) return c.value
    if (c.name === 'ip6' && c.value !== undefined) return ipv6Prefix64(c.value)
  }
  return `peer:${fallback}`
}

/** The /64 an IPv6 address belongs to, e.g. `2001:db8:0:1::/64`. */
export function ipv6Prefix64 (v: string): string {
  if (v.includes('.')) return v // IPv4-mapped: the address itself
  const [head = '', tail] = v.split('::', 2)
  const h = head === '' ? [] : head.split(':')
  const tl = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups = tail !== undefined ? [...h, ...Array<string>(Math.max(0, 8 - h.length - tl.length)).fill('0'), ...tl] : h
  return groups.slice(0, 4).map(g => parseInt(g === '' ? '0' : g, 16).toString(16)).join(':') + '::/64'
}

export class FailureTable {
  private readonly entries = new Map<string, { windowStart: number, count: number }>()

  constructor (private readonly limit: number, private readonly windowMs: number, private readonly now: () => number = Date.now) {}

  /** True while `source` has used up its failures in the current window. */
  refused (source: string): boolean {
    const e = this.entries.get(source)
    if (e === undefined) return false
    if (this.now() - e.windowStart > this.windowMs) { this.entries.delete(source); return false }
    return e.count >= this.limit
  }

  fail (source: string): void {
    const now = this.now()
    const e = this.entries.get(source)
    if (e !== undefined && now - e.windowStart <= this.windowMs) { e.count++; return }
    this.entries.delete(source)
    this.entries.set(source, { windowStart: now, count: 1 })
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= MAX_SOURCES) break
      this.entries.delete(oldest)
    }
  }

  get size (): number { return this.entries.size }
}
