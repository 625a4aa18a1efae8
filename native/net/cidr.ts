// IPv4 subnets for capsule networks: parsing "10.88.3.0/24", the addresses in
// one, and whether two overlap (nodes gossip theirs and refuse an overlap).
import { InvalidSpecError } from '../errors.js'

export interface Subnet {
  /** Network address as an unsigned 32-bit number. */
  base: number
  prefix: number
}

export function ipToNumber (ip: string): number {
  const parts = ip.split('.')
  if (parts.length !== 4) throw new InvalidSpecError(`${ip} is not an IPv4 address`)
  let n = 0
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) throw new InvalidSpecError(`${ip} is not an IPv4 address`)
    n = n * 256 + Number(p)
  }
  return n
}

export function numberToIp (n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
}

/** Parses an IPv4 CIDR; the address must be the network's first one. Capsule subnets are /16 to /28. */
export function parseSubnet (text: string): Subnet {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(text.trim())
  if (m === null) throw new InvalidSpecError(`${text} is not an IPv4 subnet such as 10.88.3.0/24`)
  const prefix = Number(m[2])
  if (prefix < 16 || prefix > 28) throw new InvalidSpecError(`${text}: a capsule subnet is /16 to /28`)
  const base = ipToNumber(m[1] as string)
  if ((base & mask(prefix)) >>> 0 !== base) throw new InvalidSpecError(`${text}: the address is not the subnet's first (did you mean ${numberToIp((base & mask(prefix)) >>> 0)}/${prefix}?)`)
  return { base, prefix }
}

function mask (prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0
}

export function formatSubnet (s: Subnet): string { return `${numberToIp(s.base)}/${s.prefix}` }

/** Addresses a subnet holds, network and broadcast included. */
export function subnetSize (s: Subnet): number { return 2 ** (32 - s.prefix) }

/**
 * The MAC a capsule's eth0 gets, derived from its address (as Docker does):
 * an address freed by one capsule and taken by the next keeps its MAC, so
 * the neighbour caches of the host and of other capsules stay right. With a
 * random MAC they send to the old one until their entry expires (15 to 50 s
 * of a restarted capsule unreachable). 02: locally administered, unicast.
 */
export function macOfAddress (ip: string): string {
  const n = ipToNumber(ip)
  return ['02', 'b0', ...[n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].map(b => b.toString(16).padStart(2, '0'))].join(':')
}

/** The bridge's own address: the subnet's first host. */
export function gatewayOf (s: Subnet): string { return numberToIp(s.base + 1) }

export function overlaps (a: Subnet, b: Subnet): boolean {
  const aEnd = a.base + subnetSize(a)
  const bEnd = b.base + subnetSize(b)
  return a.base < bEnd && b.base < aEnd
}

/** The subnet an interface address `ip/prefix` lies in (any prefix, 0 to 32). */
export function subnetOf (ip: string, prefix: number): Subnet {
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 32) throw new InvalidSpecError(`${prefix} is not an IPv4 prefix length`)
  return { base: (ipToNumber(ip) & mask(prefix)) >>> 0, prefix }
}

/** Whether `ip` is inside `s`; false for anything that is not an IPv4 address. */
export function contains (s: Subnet, ip: string): boolean {
  let n: number
  try { n = ipToNumber(ip) } catch { return false } // not an IPv4 address
  return n >= s.base && n < s.base + subnetSize(s)
}
