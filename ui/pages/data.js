// Images, Objects, Mirror and Raft: read from the agent's existing API.
import { useEffect, useState } from 'preact/hooks'
import { html, api, useApi, useStore, bytes, nameOf, shortId, readNdjson } from '../lib.js'

function Err ({ err }) { return err ? html`<p class="err" role="alert">${err}</p>` : '' }

export function ImagesPage () {
  const [images, err, reload] = useApi('/v1/images')
  const s = useStore()
  const sample = s.sample
  return html`
    <h1>Images</h1>
    <p class="muted">Images pulled to this node. Bytes now arriving: ${sample ? `${bytes(sample.peerBytes)}/s from peers, ${bytes(sample.registryBytes)}/s from registries` : '…'} (see Graphs for the last hour).</p>
    <${Err} err=${err} />
    <${PullForm} onDone=${reload} />
    <button type="button" onClick=${reload}>Refresh</button>
    <div class="scroll"><table>
      <thead><tr><th scope="col">Reference</th><th scope="col">Digest</th><th scope="col">Size</th><th scope="col">Pulled</th></tr></thead>
      <tbody>${(images || []).map(i => html`<tr key=${i.digest + i.ref}><th scope="row" class="wrap">${i.ref}</th><td><code title=${i.digest}>${i.digest.slice(0, 19)}…</code></td><td>${bytes(i.size)}</td><td>${i.pulledAt}</td></tr>`)}</tbody>
    </table></div>`
}

/** Pulls an image to this node, peers first, showing each blob's progress and where the bytes came from. */
function PullForm ({ onDone }) {
  const [blobs, setBlobs] = useState({})
  const [result, setResult] = useState(null)
  const [busy, setBusy] = useState(false)
  const submit = async (e) => {
    e.preventDefault()
    const ref = String(new FormData(e.currentTarget).get('ref')).trim()
    if (ref === '') return
    setBusy(true); setBlobs({}); setResult(null)
    try {
      const r = await fetch('/v1/images/pull', { method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ref }) })
      if (!r.ok || !r.body) { const v = await r.json().catch(() => ({})); throw new Error(v.error || `HTTP ${r.status}`) }
      await readNdjson(r, (events) => {
        for (const ev of events) {
          if (ev.event === 'progress') setBlobs(b => ({ ...b, [ev.digest]: ev }))
          else setResult(ev)
        }
      })
      onDone()
    } catch (err) { setResult({ event: 'error', error: err.message }) } finally { setBusy(false) }
  }
  const list = Object.values(blobs)
  return html`
    <form class="inline" onSubmit=${submit} aria-label="Pull an image">
      <label>Pull an image <input name="ref" required placeholder="registry.example:5000/app:1" size="36" /></label>
      <button type="submit" disabled=${busy}>Pull</button>
    </form>
    ${list.length > 0 ? html`<ul class="plain pulls">${list.map(b => html`<li key=${b.digest}>
      <code>${b.digest.slice(7, 19)}</code> <progress max=${b.pieceCount || 1} value=${b.piecesDone}>${b.piecesDone}/${b.pieceCount}</progress>
      ${bytes(b.size)}: ${bytes(b.bytesFromPeers)} from peers, ${bytes(b.bytesFromRegistry)} from the registry</li>`)}</ul>` : ''}
    ${result ? (result.event === 'error' ? html`<p class="err" role="alert">${result.error}</p>` : html`<p class="ok" role="status">pulled ${result.ref}: ${bytes(result.size)}, ${bytes(result.bytesFromPeers)} from peers, ${bytes(result.bytesFromRegistry)} from the registry, ${bytes(result.bytesLocal)} already here</p>`) : ''}`
}

export function ObjectsPage () {
  const [keys, err] = useApi('/v1/kv?prefix=objects/')
  const [rows, setRows] = useState([])
  useEffect(() => {
    if (!keys) return
    let live = true
    Promise.all(keys.slice(0, 200).map(k => api('GET', `/v1/kv/${encodeURIComponent(k)}`).then(v => ({ id: k.slice('objects/'.length), ...safeParse(v.value) })).catch(() => ({ id: k.slice('objects/'.length) }))))
      .then(r => { if (live) setRows(r) })
    return () => { live = false }
  }, [keys])
  return html`
    <h1>Objects</h1>
    <${Err} err=${err} />
    ${keys && keys.length > 200 ? html`<p class="muted">The first 200 of ${keys.length}.</p>` : ''}
    <div class="scroll"><table>
      <thead><tr><th scope="col">Object</th><th scope="col">Size</th><th scope="col">Chunks</th><th scope="col">Replicas</th></tr></thead>
      <tbody>${rows.length === 0 ? html`<tr><td colspan="4" class="muted">No objects.</td></tr>` : rows.map(o => html`<tr key=${o.id}><th scope="row"><code>${o.id}</code></th><td>${bytes(o.size)}</td><td>${o.chunks ?? ''}</td><td>${Array.isArray(o.replicas) ? o.replicas.length : (o.replicas ?? '')}</td></tr>`)}</tbody>
    </table></div>`
}

function safeParse (text) { try { const v = JSON.parse(text); return typeof v === 'object' && v !== null ? v : {} } catch { return {} } }

function KeyValues ({ obj }) {
  return html`<dl class="spec">${Object.entries(obj || {}).map(([k, v]) => html`<div key=${k}><dt>${k}</dt><dd>${typeof v === 'object' && v !== null ? html`<${KeyValues} obj=${v} />` : String(v)}</dd></div>`)}</dl>`
}

export function MirrorPage () {
  const [m, err, reload] = useApi('/v1/mirror')
  return html`
    <h1>Registry mirror</h1>
    <${Err} err=${err} />
    <button type="button" onClick=${reload}>Refresh</button>
    ${m ? html`<${KeyValues} obj=${m} />` : ''}`
}

export function RaftPage () {
  const s = useStore()
  const r = s.raft
  if (!r) return html`<p>Waiting for the agent…</p>`
  return html`
    <h1>Raft</h1>
    <dl class="facts">
      <div><dt>Leader</dt><dd>${r.leader ? nameOf(s.status, r.leader) : 'none'}</dd></div>
      <div><dt>Term</dt><dd>${r.term}</dd></div>
      <div><dt>This node</dt><dd>${r.role}</dd></div>
      <div><dt>Commit index</dt><dd>${r.commit}</dd></div>
      <div><dt>Applied</dt><dd>${r.applied}</dd></div>
      <div><dt>Last index</dt><dd>${r.lastIndex}</dd></div>
      <div><dt>Snapshot index</dt><dd>${r.snapshotIndex}</dd></div>
    </dl>
    <h2>Voters (${r.voters.length})</h2>
    <ul>${r.voters.map(v => html`<li key=${v}>${nameOf(s.status, v)} <code class="muted">${shortId(v)}</code>${v === r.leader ? ' (leader)' : ''}</li>`)}</ul>
    <h2>Learners (${r.learners.length})</h2>
    ${r.learners.length === 0 ? html`<p class="muted">none</p>` : html`<ul>${r.learners.map(v => html`<li key=${v}>${nameOf(s.status, v)}</li>`)}</ul>`}`
}
