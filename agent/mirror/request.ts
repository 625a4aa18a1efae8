// Pure parts of the mirror's request handling: which upstream a request is
// for (containerd's `ns=` or the default), the repository path under Docker
// Hub's `library/` rule, and the Range header.
import { DOCKER_HUB, DOCKER_HUB_API, isLoopbackHost, type ImageReference } from '../../p2p/content/reference.js'
import { MirrorRequestError } from './errors.js'

const NAME_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG_RE = /^[\w][\w.-]{0,127}$/
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/
const MAX_NAME = 255

export type MirrorRoute =
  | { kind: 'base' }
  | { kind: 'manifest', name: string, reference: string }
  | { kind: 'blob', name: string, digest: string }
  | { kind: 'tags', name: string }

/** Parses `/v2/`, `/v2/<name>/manifests/<ref>`, `/v2/<name>/blobs/<digest>`; throws MirrorRequestError otherwise. */
export function parseMirrorPath (pathname: string): MirrorRoute {
  if (pathname === '/v2' || pathname === '/v2/') return { kind: 'base' }
  const tags = /^\/v2\/(.+)\/tags\/list$/.exec(pathname)
  if (tags !== null) {
    const name = decodeURIComponent(tags[1] as string)
    if (name.length > MAX_NAME || !name.split('/').every(c => NAME_COMPONENT_RE.test(c))) throw new MirrorRequestError(400, 'NAME_INVALID', `invalid repository name ${JSON.stringify(name.slice(0, 100))}`)
    return { kind: 'tags', name }
  }
  const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(pathname)
  if (m === null) throw new MirrorRequestError(404, 'NOT_FOUND', `no such route ${pathname.slice(0, 200)} (this mirror is read-only: /v2/<name>/manifests/<ref>, /v2/<name>/blobs/<digest>)`)
  const name = decodeURIComponent(m[1] as string)
  const what = m[2] as string
  const ref = decodeURIComponent(m[3] as string)
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
  let registry = ns !== null && ns !== '' ? ns : defaultUpstream
  if (registry === DOCKER_HUB_API || registry === 'index.docker.io') registry = DOCKER_HUB
  const repository = registry === DOCKER_HUB && !name.includes('/') ? `library/${name}` : name
  return { registry, repository }
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
