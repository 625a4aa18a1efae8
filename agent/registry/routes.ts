// The write side of the distribution API's paths (the read side is the
// mirror's parseMirrorPath): uploads, manifests and blobs by name, the tag
// list and the token endpoint. Pure; anything else is `undefined` (the
// mirror answers it).
import { MirrorRequestError } from '../mirror/errors.js'
import { TOKEN_PATH } from './auth.js'

const NAME_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG_RE = /^[\w][\w.-]{0,127}$/
export const DIGEST_RE = /^sha256:[a-f0-9]{64}$/
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const MAX_NAME = 255

export type PushRoute =
  | { kind: 'base' }
  | { kind: 'token' }
  | { kind: 'uploads', name: string }
  | { kind: 'upload', name: string, id: string }
  | { kind: 'manifest', name: string, reference: string }
  | { kind: 'blob', name: string, digest: string }
  | { kind: 'tags', name: string }
  | { kind: 'referrers', name: string, digest: string }

function decode (part: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw new MirrorRequestError(400, 'NAME_INVALID', `malformed percent-escape in ${JSON.stringify(part.slice(0, 100))}`)
  }
}

export function checkName (raw: string): string {
  const name = decode(raw)
  if (name.length > MAX_NAME || !name.split('/').every(c => NAME_COMPONENT_RE.test(c))) throw new MirrorRequestError(400, 'NAME_INVALID', `invalid repository name ${JSON.stringify(name.slice(0, 100))}`)
  return name
}

export function checkDigest (raw: string | null | undefined): string {
  if (raw === null || raw === undefined || !DIGEST_RE.test(raw)) throw new MirrorRequestError(400, 'DIGEST_INVALID', `invalid digest ${JSON.stringify((raw ?? '').slice(0, 100))} (sha256:<64 hex>)`)
  return raw
}

/** The route of `pathname`, undefined when it is not one of the registry's; throws a 400 on a bad name, digest or tag. */
export function parsePushPath (pathname: string): PushRoute | undefined {
  if (pathname === '/v2' || pathname === '/v2/') return { kind: 'base' }
  if (pathname === TOKEN_PATH) return { kind: 'token' }
  let m = /^\/v2\/(.+)\/blobs\/uploads\/?$/.exec(pathname)
  if (m !== null) return { kind: 'uploads', name: checkName(m[1] as string) }
  m = /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/.exec(pathname)
  if (m !== null) {
    const id = decode(m[2] as string)
    if (!UUID_RE.test(id)) throw new MirrorRequestError(404, 'BLOB_UPLOAD_UNKNOWN', `no upload ${JSON.stringify(id.slice(0, 64))}`)
    return { kind: 'upload', name: checkName(m[1] as string), id }
  }
  m = /^\/v2\/(.+)\/referrers\/([^/]+)$/.exec(pathname)
  if (m !== null) return { kind: 'referrers', name: checkName(m[1] as string), digest: checkDigest(decode(m[2] as string)) }
  m = /^\/v2\/(.+)\/tags\/list$/.exec(pathname)
  if (m !== null) return { kind: 'tags', name: checkName(m[1] as string) }
  m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(pathname)
  if (m === null) return undefined
  const name = checkName(m[1] as string)
  const ref = decode(m[3] as string)
  if (m[2] === 'blobs') return { kind: 'blob', name, digest: checkDigest(ref) }
  if (!DIGEST_RE.test(ref) && !TAG_RE.test(ref)) throw new MirrorRequestError(400, 'TAG_INVALID', `invalid tag or digest ${JSON.stringify(ref.slice(0, 100))}`)
  return { kind: 'manifest', name, reference: ref }
}
