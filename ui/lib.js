// Shared bits: htm bound to preact, the API caller, the live store fed by
// the agent's event stream, and small formatting helpers. Every value from
// the agent is rendered as text by preact (never as HTML).
import { h } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import htm from 'htm'

export const html = htm.bind(h)

/** Calls the agent's API with the session cookie; a 401 reloads (the login page). */
export async function api (method, path, body) {
  const init = { method, credentials: 'same-origin', headers: {} }
  if (body !== undefined) { init.headers['content-type'] = 'application/json'; init.body = JSON.stringify(body) }
  const r = await fetch(path, init)
  const text = await r.text()
  let v = null
  try { v = text === '' ? null : JSON.parse(text) } catch { v = { error: text } }
  if (r.status === 401) { location.reload(); throw new Error('logged out') }
  if (!r.ok) throw new Error((v && v.error) || `HTTP ${r.status}`)
  return v
}

// ---- the live store ---------------------------------------------------------

const state = { connected: false, status: null, capsules: [], raft: null, timeline: [], sample: null, hello: null, pulls: [], since: 0 }
const listeners = new Set()
function emit () { for (const l of listeners) l() }
export function set (patch) { Object.assign(state, patch); emit() }

/** The store, re-rendering the caller on every change. */
export function useStore () {
  const [, bump] = useState(0)
  useEffect(() => { const l = () => bump(n => n + 1); listeners.add(l); return () => listeners.delete(l) }, [])
  return state
}

let source
/** One event stream for the whole page; reconnects (with a new EventSource) if the agent goes away. */
export function connect () {
  if (source) source.close()
  const es = new EventSource('/v1/ui/events')
  source = es
  const on = (name, fn) => es.addEventListener(name, (e) => { try { fn(JSON.parse(e.data)) } catch (err) { console.error(err) } })
  es.onopen = () => set({ connected: true, since: Date.now() })
  on('hello', (v) => set({ hello: v }))
  on('status', (v) => set({ status: v }))
  on('capsules', (v) => set({ capsules: v }))
  on('raft', (v) => set({ raft: v }))
  on('timeline', (v) => set({ timeline: v }))
  on('sample', (v) => set({ sample: v }))
  on('pulls', (v) => set({ pulls: v }))
  on('member', (v) => set({ timeline: [...state.timeline.slice(-199), v] }))
  es.onerror = () => {
    set({ connected: false })
    // A stream refused (401 after logout, 5xx) is closed for good: start another after a pause.
    if (es.readyState === EventSource.CLOSED) setTimeout(() => { if (source === es) connect() }, 2000)
  }
}

// ---- formatting -------------------------------------------------------------

export function bytes (n) {
  if (n == null || !isFinite(n)) return ''
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++ }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${u[i]}`
}
export function ago (ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000))
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`
}
export function shortId (id) { return id ? `${id.slice(0, 6)}…${id.slice(-6)}` : '' }
export function nameOf (status, id) {
  const m = status && status.members.find(x => x.id === id)
  return m ? m.name : (id ? shortId(id) : '')
}

export function Badge ({ value }) {
  return html`<span class=${`badge s-${String(value).replace(/[^a-z]/g, '')}`}>${value}</span>`
}

export function Labels ({ labels }) {
  const e = Object.entries(labels || {})
  if (e.length === 0) return html`<span class="muted">none</span>`
  return html`<ul class="labels">${e.map(([k, v]) => html`<li key=${k}><code>${k}=${v}</code></li>`)}</ul>`
}

/** Loads `path` once (and again when `deps` change); returns [value, error, reload]. */
export function useApi (path, deps = []) {
  const [v, setV] = useState(undefined)
  const [err, setErr] = useState(undefined)
  const [n, setN] = useState(0)
  useEffect(() => {
    let live = true
    api('GET', path).then(x => { if (live) { setV(x); setErr(undefined) } }, e => { if (live) setErr(e.message) })
    return () => { live = false }
  }, [path, n, ...deps])
  return [v, err, () => setN(x => x + 1)]
}

/**
 * Reads a response of NDJSON lines as they arrive: `onBatch` gets the
 * records each read completed. `lenient`: a line that is not JSON is skipped
 * (a log stream); otherwise it throws.
 */
export async function readNdjson (res, onBatch, lenient = false) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  let buf = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    buf += value
    const parts = buf.split('\n')
    buf = parts.pop()
    const got = []
    for (const p of parts) {
      if (p.trim() === '') continue
      if (!lenient) { got.push(JSON.parse(p)); continue }
      try { got.push(JSON.parse(p)) } catch { /* a torn or foreign line in a log stream: skipped */ }
    }
    if (got.length > 0) onBatch(got)
  }
}
