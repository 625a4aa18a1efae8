// The dashboard proper, loaded on the first dashboard request: the static
// files built by scripts/build-ui.mjs (dist/ui-web) and one server-sent
// events stream a page, pushed on change (membership events, committed
// capsule commands, pull progress) and every sample tick, never polled by
// the page.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { ApiError } from '../api/server.js'
import { SAMPLE_INTERVAL_MS, type MetricsRing } from './ring.js'
import type { MemberEventView, UiSources } from './sources.js'

/** dist/ui-web beside dist/agent, whichever tsconfig built dist/. */
export const WEB_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'ui-web')
/** Changes are sent at most this often, coalesced. */
export const PUSH_DELAY_MS = 100
/** A page's stream that has this much unsent is dropped (the page reconnects). */
export const MAX_BUFFERED = 4 * 1024 * 1024
/** At most this many open streams. */
export const MAX_STREAMS = 64

const TYPES: Record<string, string> = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', png: 'image/png', svg: 'image/svg+xml', json: 'application/json' }
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

interface WebFile { body: Buffer, gz: Buffer, type: string }
/** What a change is pushed as, coalesced over PUSH_DELAY_MS. */
type Pushed = 'status' | 'capsules' | 'raft' | 'pulls'

export class Dashboard {
  private readonly files = new Map<string, WebFile>()
  private readonly streams = new Set<ServerResponse>()
  private pending = new Set<Pushed>()
  private timer: NodeJS.Timeout | undefined
  private readonly tick: NodeJS.Timeout
  private lastStatus = ''
  private lastRaft = ''

  constructor (private readonly src: UiSources, private readonly ring: MetricsRing, private readonly timeline: MemberEventView[]) {
    let names: string[] = []
    try { names = readdirSync(WEB_DIR) } catch {} // no built web files: the page routes 404, the API still serves
    for (const name of names) {
      const ext = name.slice(name.lastIndexOf('.') + 1)
      const type = TYPES[ext]
      if (type === undefined) continue
      const body = readFileSync(join(WEB_DIR, name))
      this.files.set(name, { body, gz: gzipSync(body), type })
    }
    this.tick = setInterval(() => { this.onTick() }, SAMPLE_INTERVAL_MS)
    this.tick.unref()
  }

  serveFile (name: string, res: ServerResponse): void {
    const f = this.files.get(name)
    if (f === undefined) {
      if (this.files.size === 0) throw new ApiError(503, `the dashboard is not built (no files in ${WEB_DIR}): run npm run build`)
      throw new ApiError(404, `no such dashboard file: ${name}`)
    }
    const gz = /\bgzip\b/.test(String(res.req.headers['accept-encoding'] ?? ''))
    const body = gz ? f.gz : f.body
    res.writeHead(200, {
      'content-type': f.type,
      'content-length': body.length,
      ...(gz ? { 'content-encoding': 'gzip' } : {}),
      vary: 'accept-encoding',
      'cache-control': 'no-cache',
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY'
    })
    res.end(body)
  }

  /** `GET /v1/ui/events`: a snapshot, then changes as they happen. */
  events (req: IncomingMessage, res: ServerResponse): void {
    if (this.streams.size >= MAX_STREAMS) throw new ApiError(503, `too many dashboard streams open (${MAX_STREAMS})`)
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' })
    res.socket?.setNoDelay(true)
    this.streams.add(res)
    req.on('close', () => { this.streams.delete(res) })
    this.send(res, 'hello', { version: this.src.version, interval: SAMPLE_INTERVAL_MS })
    this.send(res, 'status', this.src.status())
    this.send(res, 'capsules', this.src.capsules())
    this.send(res, 'raft', this.src.raft())
    this.send(res, 'timeline', this.timeline)
    this.send(res, 'pulls', this.src.pulls())
    const m = this.ring.latest()
    if (m !== undefined) this.send(res, 'sample', m)
  }

  member (e: MemberEventView): void {
    this.broadcast('member', e)
    this.schedule('status')
    this.schedule('capsules')
  }

  applied (op: string): void {
    if (op.startsWith('capsule.') || op.startsWith('instance.')) this.schedule('capsules')
    if (op === 'role') this.schedule('status')
    this.schedule('raft')
  }

  /** A pull began, reported progress or ended: many reports a second coalesce into one push. */
  pullsChanged (): void { this.schedule('pulls') }

  close (): void {
    clearInterval(this.tick)
    if (this.timer !== undefined) clearTimeout(this.timer)
    for (const s of this.streams) s.end()
    this.streams.clear()
  }

  private schedule (what: Pushed): void {
    if (this.streams.size === 0) return
    this.pending.add(what)
    this.timer ??= setTimeout(() => { this.flush() }, PUSH_DELAY_MS)
  }

  private flush (): void {
    this.timer = undefined
    const kinds = this.pending
    this.pending = new Set()
    if (kinds.has('status')) this.pushStatus(true)
    if (kinds.has('capsules')) this.broadcast('capsules', this.src.capsules())
    if (kinds.has('raft')) this.pushRaft(true)
    if (kinds.has('pulls')) this.broadcast('pulls', this.src.pulls())
  }

  private onTick (): void {
    if (this.streams.size === 0) return
    const m = this.ring.latest()
    if (m !== undefined) this.broadcast('sample', m)
    // Leader, term and connections change without a membership event.
    this.pushStatus(false)
    this.pushRaft(false)
  }

  private pushStatus (always: boolean): void {
    const text = JSON.stringify(this.src.status())
    if (!always && text === this.lastStatus) return
    this.lastStatus = text
    this.broadcastText('status', text)
  }

  private pushRaft (always: boolean): void {
    const text = JSON.stringify(this.src.raft())
    if (!always && text === this.lastRaft) return
    this.lastRaft = text
    this.broadcastText('raft', text)
  }

  private broadcast (event: string, value: unknown): void {
    if (this.streams.size === 0) return
    this.broadcastText(event, JSON.stringify(value))
  }

  private broadcastText (event: string, json: string): void {
    for (const s of this.streams) this.write(s, event, json)
  }

  private send (res: ServerResponse, event: string, value: unknown): void { this.write(res, event, JSON.stringify(value)) }

  private write (res: ServerResponse, event: string, json: string): void {
    if (res.writableLength > MAX_BUFFERED) { this.streams.delete(res); res.destroy(); return }
    // JSON.stringify leaves no raw newline in `json`: one data line an event.
    res.write(`event: ${event}\ndata: ${json}\n\n`)
  }
}
