// The push credential. Pulls need none; pushes and deletes need the
// cluster's push credential, derived from the cluster key (HMAC-SHA256 of
// a fixed label), so every member accepts the same one and it changes when
// the key is rotated (`token --rotate`, an eviction). An operator gets it
// with `bolt-agent registry login-token` (API token needed).
//
// Clients present it as the distribution spec's token flow describes: the
// `/v2/` ping answers 401 with `WWW-Authenticate: Bearer realm=…/v2/token`;
// the client fetches the realm with HTTP Basic (any user name, the credential
// as password) and gets a Bearer token (the credential itself); a client
// without credentials gets an anonymous token that only pulls. HTTP Basic
// with the credential is also accepted on every request.
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'

export const PUSH_USERNAME = 'bolt'
export const ANONYMOUS_TOKEN = 'anonymous'
export const TOKEN_PATH = '/v2/token'
export const SERVICE = 'bolt-registry'
const LABEL = 'bolt registry push credential v1'

/** The push credential of a cluster whose key is `clusterKeyHex`. */
export function pushCredential (clusterKeyHex: string): string {
  return 'boltpush_' + createHmac('sha256', Buffer.from(clusterKeyHex, 'hex')).update(LABEL).digest('base64url')
}

function same (a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/** The secret a request presents: a Bearer token or a Basic password; undefined when none or malformed. */
export function presented (header: string | undefined): string | undefined {
  if (header === undefined || header.length > 4096) return undefined
  const m = /^\s*(Bearer|Basic)\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header)
  if (m === null) return undefined
  if ((m[1] as string).toLowerCase() === 'bearer') return m[2]
  const decoded = Buffer.from(m[2] as string, 'base64').toString('utf8')
  const i = decoded.indexOf(':')
  return i < 0 ? undefined : decoded.slice(i + 1)
}

/** Whether the request carries the push credential. */
export function mayPush (req: IncomingMessage, credential: string): boolean {
  const p = presented(req.headers.authorization)
  return p !== undefined && same(p, credential)
}

/** The challenge for `req` (realm on the host the client used). */
export function challenge (req: IncomingMessage, scope?: string): string {
  const host = (req.headers.host ?? 'localhost').replace(/[^A-Za-z0-9.:[\]-]/g, '')
  return `Bearer realm="http://${host}${TOKEN_PATH}",service="${SERVICE}"${scope !== undefined ? `,scope="${scope.replace(/[^A-Za-z0-9._/:,*-]/g, '')}"` : ''}`
}

/**
 * The token endpoint: Basic with the credential → the credential as Bearer
 * token; no Authorization → an anonymous (pull-only) token; a wrong
 * credential → undefined (401).
 */
export function issueToken (req: IncomingMessage, credential: string): string | undefined {
  if (req.headers.authorization === undefined) return ANONYMOUS_TOKEN
  return mayPush(req, credential) ? credential : undefined
}
