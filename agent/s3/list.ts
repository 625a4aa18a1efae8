// ListObjects / ListObjectsV2 over one bucket's records: prefix, delimiter
// (common prefixes), a start point (marker, start-after or continuation
// token) and max-keys. Pure: the same records give the same page on every
// agent. The continuation token says whether the page ended on a key or on
// a common prefix, so the next page skips that whole prefix and nothing else.
import { s3err } from './errors.js'
import type { S3ObjectRecord } from './s3-state.js'

export const DEFAULT_MAX_KEYS = 1000

export interface ListQuery {
  prefix: string
  delimiter: string
  /** Keys at or before this are skipped (marker / start-after). */
  after: string
  /** From a continuation token: a common prefix to skip entirely. */
  afterPrefix?: string
  maxKeys: number
}

export interface ListPage {
  contents: Array<{ key: string, record: S3ObjectRecord }>
  commonPrefixes: string[]
  truncated: boolean
  /** The last key or prefix of the page (the next marker). */
  last?: { kind: 'key' | 'prefix', value: string }
}

export function listPage (objects: Map<string, S3ObjectRecord>, q: ListQuery): ListPage {
  const keys = [...objects.keys()].filter(k => k.startsWith(q.prefix) && k > q.after && (q.afterPrefix === undefined || (k > q.afterPrefix && !k.startsWith(q.afterPrefix)))).sort(compareKeys)
  const page: ListPage = { contents: [], commonPrefixes: [], truncated: false }
  let lastPrefix: string | undefined
  for (const k of keys) {
    const rest = k.slice(q.prefix.length)
    const cut = q.delimiter === '' ? -1 : rest.indexOf(q.delimiter)
    const cp = cut >= 0 ? q.prefix + rest.slice(0, cut + q.delimiter.length) : undefined
    if (cp !== undefined && cp === lastPrefix) continue
    if (page.contents.length + page.commonPrefixes.length >= q.maxKeys) { page.truncated = true; break }
    if (cp !== undefined) {
      page.commonPrefixes.push(cp)
      lastPrefix = cp
      page.last = { kind: 'prefix', value: cp }
    } else {
      page.contents.push({ key: k, record: objects.get(k)! })
      page.last = { kind: 'key', value: k }
    }
  }
  return page
}

/** S3 orders keys by their UTF-8 bytes. */
export function compareKeys (a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b))
}

export function encodeToken (last: { kind: 'key' | 'prefix', value: string }): string {
  return Buffer.from(`${last.kind === 'key' ? 'k' : 'p'}:${last.value}`).toString('base64url')
}

/** A continuation token back into the start point; InvalidArgument when it is not one of ours. */
export function decodeToken (token: string): Pick<ListQuery, 'after' | 'afterPrefix'> {
  const s = Buffer.from(token, 'base64url').toString()
  if (token.length > 4096 || !/^[kp]:/.test(s)) throw s3err.invalidArgument('The continuation token provided is incorrect')
  return s[0] === 'k' ? { after: s.slice(2) } : { after: '', afterPrefix: s.slice(2) }
}

export function parseMaxKeys (v: string | undefined, max = DEFAULT_MAX_KEYS): number {
  if (v === undefined) return max
  if (!/^\d{1,9}$/.test(v)) throw s3err.invalidArgument('max-keys must be a non-negative integer')
  return Math.min(Number(v), max)
}

/** encoding-type=url: keys as clients decode them (RFC 3986, '/' left as is). */
export function urlEncodeKey (k: string): string {
  return encodeURIComponent(k).replace(/%2F/g, '/').replace(/[!'()*]/g, c => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}
