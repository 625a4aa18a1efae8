// Image references as Docker writes them: `[host[:port]/]name[:tag][@digest]`.
// A first component is a host only if it has a dot or a colon or is
// `localhost`; Docker Hub names of one component live under `library/`.
import { InvalidReferenceError } from './errors.js'

export const DOCKER_HUB = 'docker.io'
/** Where Docker Hub's distribution API really answers. */
export const DOCKER_HUB_API = 'registry-1.docker.io'
export const DEFAULT_TAG = 'latest'

export interface ImageReference {
  /** Registry host[:port] as written (docker.io for Docker Hub). */
  registry: string
  /** Repository path inside the registry, e.g. `library/busybox`. */
  repository: string
  tag?: string
  digest?: string
}

const COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG_RE = /^[\w][\w.-]{0,127}$/
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/
const MAX_REFERENCE = 512

export function parseReference (input: string, opts: { defaultRegistry?: string } = {}): ImageReference {
  const s = input.trim()
  if (s.length === 0 || s.length > MAX_REFERENCE) throw new InvalidReferenceError(`invalid image reference ${JSON.stringify(input.slice(0, 80))}: empty or longer than ${MAX_REFERENCE} characters`)
  let rest = s
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!DIGEST_RE.test(digest)) throw new InvalidReferenceError(`invalid image reference ${JSON.stringify(input)}: digest must be sha256:<64 hex>`)
  }
  let tag: string | undefined
  const lastSlash = rest.lastIndexOf('/')
  const colon = rest.lastIndexOf(':')
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG_RE.test(tag)) throw new InvalidReferenceError(`invalid image reference ${JSON.stringify(input)}: bad tag ${JSON.stringify(tag)}`)
  }
  const parts = rest.split('/')
  let registry = opts.defaultRegistry ?? DOCKER_HUB
  const first = parts[0] as string
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first
    parts.shift()
  }
  if (registry === 'index.docker.io' || registry === DOCKER_HUB_API) registry = DOCKER_HUB
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library')
  for (const p of parts) {
    if (!COMPONENT_RE.test(p)) throw new InvalidReferenceError(`invalid image reference ${JSON.stringify(input)}: bad name component ${JSON.stringify(p)} (lowercase letters, digits, separators)`)
  }
  const ref: ImageReference = { registry, repository: parts.join('/') }
  if (tag !== undefined) ref.tag = tag
  if (digest !== undefined) ref.digest = digest
  if (tag === undefined && digest === undefined) ref.tag = DEFAULT_TAG
  return ref
}

export function formatReference (ref: ImageReference): string {
  let s = `${ref.registry}/${ref.repository}`
  if (ref.tag !== undefined) s += `:${ref.tag}`
  if (ref.digest !== undefined) s += `@${ref.digest}`
  return s
}

/** The host to send distribution API requests to. */
export function apiHost (registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_API : registry
}

/** Loopback registries may be spoken to over plain HTTP (as Docker does). */
export function isLoopbackHost (hostPort: string): boolean {
  const host = hostPort.startsWith('[') ? hostPort.slice(1, hostPort.indexOf(']')) : hostPort.split(':')[0] as string
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
}
