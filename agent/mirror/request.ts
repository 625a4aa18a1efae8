// Pure parts of the mirror's request handling: which upstream a request is
// for (containerd's `ns=`, checked against the configured registries, or the
// default), the repository path under Docker Hub's `library/` rule, and the
// Range header.
import { isIP } from 'node:net'
import { DOCKER_HUB, DOCKER_HUB_API, isLoopbackHost, type ImageReference } from '../../p2p/content/reference.js'
import { MirrorRequestError } from './errors.js'
import { isInternalAddress, privateHostAllowed } from './upstream-guard.js'

const NAME_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG_RE = /^[\w][\w.-]{0,127}$/
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/
const MAX_NAME = 255

export type MirrorRoute =
  | { kind: 'base' }
  | { kind: 'manifest', name: string, reference: string }
  | { kind: 'blob', name: string, digest: string }
  | { kind: 'tags', name: string }

/** decodeURIComponent that answers a malformed escape with a 400 rather than a URIError (a 500). */
function decodePart (part: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw new MirrorRequestError(400, 'NAME_INVALID', `malformed percent-escape in ${JSON.stringify(part.slice(0, 100))}`)
  }
}

/** Parses `/v2/`, `/v2/<name>/manifests/<ref>`, `/v2/<name>/blobs/<digest>`; throws MirrorRequestError otherwise. */
export function parseMirrorPath (pathname: string): MirrorRoute {
  if (pathname === '/v2' || pathname === '/v2/') return { kind: 'base' }
  const tags = /^\/v2\/(.+)\/tags\/list$/.exec(pathname)
  if (tags !== null) {
    const name = decodePart(tags[1] as string)
    if (name.length > MAX_NAME || !name.split('/').every(c => NAME_COMPONENT_RE.test(c))) throw new MirrorRequestError(400, 'NAME_INVALID', `invalid repository name ${JSON.stringify(name.slice(0, 100))}`)
    return { kind: 'tags', name }
  }
  const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(pathname)
  if (m === null) throw new MirrorRequestError(404, 'NOT_FOUND', `no such route ${pathname.slice(0, 200)} (this mirror is read-only: /v2/<name>/manifests/<ref>, /v2/<name>/blobs/<digest>)`)
  const name = decodePart(m[1] as string)
  const what = m[2] as string
  const ref = decodePart(m[3] as string)
  if (name.length > MAX_NAME || !name.split('/').every(c => NAME_COMPONENT_RE.test(c))) throw new MirrorRequestError(400, 'NAME_INVALID', `invalid repository name ${JSON.stringify(name.slice(0, 100))}`)
  if (what === 'blobs') {
    if (!DIGEST_RE.test(ref)) throw new MirrorRequestError(400, 'DIGEST_INVALID', `invalid digest ${JSON.stringify(ref.slice(0, 100))} (sha256:<64 hex>)`)
    return { kind: 'blob', name, digest: ref }
  }
  if (!DIGEST_RE.test(ref) && !TAG_RE.test(ref)) throw new MirrorRequestError(400, 'MANIFEST_INVALID', `invalid tag or digest ${JSON.stringify(ref.slice(0, 100))}`)
  return { kind: 'manifest', name, reference: ref }
}

/**
 * The registry a request is for: containerd's `ns=` (the registry the image
 * reference named), else the mirror's default upstream. Docker Hub under any
 * of its names becomes `docker.io`, whose one-component names get `library/`.
 */
export function upstreamReference (name: string, ns: string | null, defaultUpstream: string): ImageReference {
  const registry = canonicalRegistry(ns !== null && ns !== '' ? ns : defaultUpstream)
  const repository = registry === DOCKER_HUB && !name.includes('/') ? `library/${name}` : name
  return { registry, repository }
}

/** A registry as `ns=` may name it: a DNS name or IP literal, and an optional port without a leading zero (a URL writes 09 as 9, so `a:09` would name another host than the one fetched from); nothing else. */
const NS_RE = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]{2,45}\])(?::([1-9]\d{0,4}))?$/
const MAX_NS = 260

/** Docker Hub under any of its names is `docker.io`; other names as given, lower case. */
export function canonicalRegistry (registry: string): string {
  const r = registry.toLowerCase()
  return r === DOCKER_HUB_API || r === 'index.docker.io' ? DOCKER_HUB : r
}

/**
 * containerd's `ns=` as a registry `host[:port]`: a path, query, fragment,
 * userinfo, scheme or anything but a host name / IP literal and port is a
 * 400, so the upstream URL is built only from checked parts. A literal
 * loopback, private or link-local address is a 400 unless `privateHosts`
 * (`[mirror] allow_private_hosts`) names it.
 */
export function parseNamespace (ns: string, privateHosts: string[] = []): string {
  const quoted = JSON.stringify(ns.slice(0, 100))
  const host = ns.toLowerCase()
  const m = host.length <= MAX_NS ? NS_RE.exec(host) : null
  if (m === null) throw new MirrorRequestError(400, 'NAME_INVALID', `ns=${quoted} is not a registry host[:port] (no scheme, path, query or userinfo)`)
  const port = m[1]
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) throw new MirrorRequestError(400, 'NAME_INVALID', `ns=${quoted}: port out of range`)
  const name = (port === undefined ? host : host.slice(0, host.length - port.length - 1)).replace(/^\[|\]$/g, '')
  if (name.startsWith('[') || (host.startsWith('[') && isIP(name) !== 6)) throw new MirrorRequestError(400, 'NAME_INVALID', `ns=${quoted} is not a registry host[:port]`)
  // A numeric last label makes URL parsers read the name as an IPv4 address in another notation (0x7f, 2130706433).
  if (!host.startsWith('[') && /(?:^|\.)(?:0x[0-9a-f]*|\d+)$/.test(name) && isIP(name) !== 4) throw new MirrorRequestError(400, 'NAME_INVALID', `ns=${quoted} is neither a host name nor a dotted IPv4 address`)
  if (!privateHostAllowed(privateHosts, new URL(`https://${host}`)) && (name === 'localhost' || name.endsWith('.localhost') || (isIP(name) !== 0 && isInternalAddress(name)))) {
    throw new MirrorRequestError(400, 'DENIED', `ns=${quoted} is a loopback, private or link-local address: the mirror does not fetch from those (list it in [mirror] allow_private_hosts to allow it)`)
  }
  return host
}

/**
 * The registries the mirror fetches from: `[mirror] registries` when set,
 * else the default upstream and Docker Hub; the default upstream always.
 */
export function allowedRegistries (configured: string[] | undefined, upstream: string): Set<string> {
  return new Set([...(configured ?? [DOCKER_HUB]), upstream].map(canonicalRegistry))
}

/** Throws a 400 unless `registry` (canonical) is on the allow-list. */
export function checkRegistryAllowed (registry: string, allowed: Set<string>): void {
  if (!allowed.has(canonicalRegistry(registry))) {
    throw new MirrorRequestError(400, 'DENIED', `registry ${JSON.stringify(registry.slice(0, 100))} is not one this mirror serves (add it to [mirror] registries)`)
  }
}

export type ByteRange = { start: number, end: number }

/**
 * A single `bytes=` range against a blob of `size` bytes (end inclusive):
 * undefined when there is no usable Range header (serve it whole), 'unsatisfiable'
 * when it lies outside the blob. Multiple ranges are answered whole, as the spec allows.
 */
export function parseRange (header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header)
  if (m === null) return undefined
  const a = m[1] as string
  const b = m[2] as string
  if (a === '' && b === '') return undefined
  let start: number
  let end: number
  if (a === '') {
    const suffix = Number(b)
    if (suffix === 0) return 'unsatisfiable'
    start = Math.max(0, size - suffix)
    end = size - 1
  } else {
    start = Number(a)
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1)
    if (b !== '' && Number(b) < start) return undefined
  }
  if (start >= size || !Number.isSafeInteger(start) || !Number.isSafeInteger(end)) return 'unsatisfiable'
  return { start, end }
}

/** `host:port` → loopback or not (binding anywhere else needs `allow_remote`). */
export function isLoopbackListen (hostPort: string): boolean {
  return isLoopbackHost(hostPort)
}

/** Splits `host:port` / `[v6]:port`. */
export function splitHostPort (hostPort: string): { host: string, port: number } {
  const idx = hostPort.lastIndexOf(':')
  return { host: hostPort.slice(0, idx).replace(/^\[|\]$/g, ''), port: Number(hostPort.slice(idx + 1)) }
}
