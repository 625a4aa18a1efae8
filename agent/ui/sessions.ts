// The dashboard's login: `bolt-agent ui` asks the agent (with the API token)
// for a one-time code; the browser trades the code for a session cookie.
// Codes live in memory only, are single-use and expire in a minute or two.
// A session is a signed expiry (HMAC-SHA256 under a key kept in the data dir,
// mode 0600), so it survives an agent restart and the page reconnects.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { IncomingMessage } from 'node:http'

export const CODE_TTL_MS = 120_000
export const SESSION_TTL_MS = 12 * 3600_000
export const SESSION_KEY_FILE = 'ui-session.key'
/** At most this many codes wait to be used; the oldest goes first. */
export const MAX_PENDING_CODES = 64

/** The cookie's name carries the API port: agents on one host share the browser's cookie jar for 127.0.0.1. */
export function cookieName (port: number): string { return `bolt_ui_${port}` }

export class Sessions {
  private readonly codes = new Map<string, number>()
  private key: Buffer | undefined

  constructor (private readonly dataDir: string, private readonly now: () => number = Date.now) {}

  /** Reads (or creates) the signing key; call before the first check. */
  async load (): Promise<void> {
    if (this.key !== undefined) return
    const file = join(this.dataDir, SESSION_KEY_FILE)
    const text = await readFile(file, 'utf8').catch(() => '') // none yet (or unreadable): a new key below; sessions sign in again
    if (/^[0-9a-f]{64}$/.test(text.trim())) { this.key = Buffer.from(text.trim(), 'hex'); return }
    const key = randomBytes(32)
    await writeFile(file, key.toString('hex') + '\n', { mode: 0o600 })
    this.key = key
  }

  /** A new single-use login code. */
  newCode (): { code: string, expiresAt: number } {
    const now = this.now()
    for (const [c, exp] of this.codes) if (exp <= now) this.codes.delete(c)
    while (this.codes.size >= MAX_PENDING_CODES) this.codes.delete(this.codes.keys().next().value as string)
    const code = randomBytes(24).toString('base64url')
    const expiresAt = now + CODE_TTL_MS
    this.codes.set(code, expiresAt)
    return { code, expiresAt }
  }

  /** Spends a code: true once for a live code, false for a wrong, used or expired one. */
  redeem (code: string): boolean {
    const exp = this.codes.get(code)
    if (exp === undefined) return false
    this.codes.delete(code)
    return exp > this.now()
  }

  /** A signed session value: `EXPIRY.NONCE.MAC`. */
  newSession (): { value: string, maxAgeS: number } {
    const body = `${this.now() + SESSION_TTL_MS}.${randomBytes(12).toString('base64url')}`
    return { value: `${body}.${this.mac(body)}`, maxAgeS: SESSION_TTL_MS / 1000 }
  }

  valid (value: string | undefined): boolean {
    if (value === undefined || this.key === undefined || value.length > 200) return false
    const m = /^(\d{1,16})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})$/.exec(value)
    if (m === null) return false
    const want = Buffer.from(this.mac(`${m[1]}.${m[2]}`))
    const got = Buffer.from(m[3]!)
    return want.length === got.length && timingSafeEqual(want, got) && Number(m[1]) > this.now()
  }

  /** Whether the request carries this listener's valid session cookie. */
  check (req: IncomingMessage): boolean {
    return this.valid(readCookie(req.headers.cookie, cookieName(req.socket.localPort ?? 0)))
  }

  private mac (body: string): string {
    return createHmac('sha256', this.key ?? Buffer.alloc(32)).update(body).digest('base64url')
  }
}

/** The value of cookie `name` in a Cookie header, or undefined. */
export function readCookie (header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  for (const part of header.split(';')) {
    const i = part.indexOf('=')
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim()
  }
  return undefined
}
