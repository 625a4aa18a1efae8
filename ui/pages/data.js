// Images, Objects, Mirror and Raft: read from the agent's existing API.
import { useEffect, useRef, useState } from 'preact/hooks'
import { html, api, useApi, useStore, bytes, nameOf, shortId, readNdjson } from '../lib.js'

function Err ({ err }) { return err ? html`<p class="err" role="alert">${err}</p>` : '' }

export function ImagesPage () {
  const [images, err, reload] = useApi('/v1/images')
  const s = useStore()
  const sample = s.sample
  // A pull that ended has recorded its image: read the list again.
  const ids = s.pulls.map(p => p.id).join(',')
  const seen = useRef(ids)
  useEffect(() => { if (seen.current !== ids) { const ended = seen.current.split(',').some(id => id !== '' && !ids.split(',').includes(id)); seen.current = ids; if (ended) reload() } }, [ids])
  return html`
    <h1>Images</h1>
    <p class="muted">Images pulled to this node. Bytes now arriving: ${sample ? `${bytes(sample.peerBytes)}/s from peers, ${bytes(sample.registryBytes)}/s from registries` : '…'} (see Graphs for the last hour).</p>
    <${Err} err=${err} />
    <${PullForm} onDone=${reload} />
    <${Pulls} pulls=${s.pulls} />
    <h2>On this node</h2>
    <button type="button" onClick=${reload}>Refresh</button>
    <div class="scroll"><table data-testid="images">
      <thead><tr><th scope="col">Reference</th><th scope="col">Digest</th><th scope="col">Size</th><th scope="col">From peers</th><th scope="col">From the registry</th><th scope="col">Already here</th><th scope="col">Pulled</th></tr></thead>
      <tbody>${(images || []).length === 0 ? html`<tr><td colspan="7" class="muted">No images.</td></tr>` : images.map(i => html`<tr key=${i.digest + i.ref} data-image=${i.ref} data-peers=${i.bytesFromPeers ?? ''} data-registry=${i.bytesFromRegistry ?? ''}>
        <th scope="row" class="wrap">${i.ref}</th><td><code title=${i.digest}>${i.digest.slice(0, 19)}…</code></td><td>${bytes(i.size)}</td>
        <${Origin} v=${i.bytesFromPeers} /><${Origin} v=${i.bytesFromRegistry} /><${Origin} v=${i.bytesLocal} /><td>${i.pulledAt}</td></tr>`)}</tbody>
    </table></div>`
}

/** A byte count of an image's origin; pulled by an older agent: not known. */
function Origin ({ v }) { return v == null ? html`<td class="muted" title="pulled before agents recorded it">unknown</td>` : html`<td>${bytes(v)}</td>` }

const STARTERS = { api: 'bolt-agent pull', capsule: 'a capsule start' }

/** Pulls running on this node, whoever started them, from the page's event stream. */
function Pulls ({ pulls }) {
  return html`
    <section aria-labelledby="pulls-h">
      <h2 id="pulls-h">Pulls in progress</h2>
      ${pulls.length === 0 ? html`<p class="muted">None.</p>` : html`<ul class="plain pulls" data-testid="pulls">${pulls.map(p => {
        const g = p.progress
        const total = g ? g.totalBytes : 0
        return html`<li key=${p.id} data-pull=${p.ref} data-started-by=${p.startedBy}>
          <strong>${g ? g.ref : p.ref}</strong> <span class="muted">(${STARTERS[p.startedBy] || p.startedBy})</span><br />
          <progress max=${total || 1} value=${g && total ? g.doneBytes : undefined} aria-label=${`pull of ${p.ref}`}>${g ? `${g.doneBytes}/${total}` : ''}</progress>
          ${!g || g.phase === 'manifest' ? ' resolving the manifest…' : ` ${bytes(g.doneBytes)} of ${bytes(total)}, ${g.blobsDone}/${g.blobs} blobs: ${bytes(g.bytesFromPeers)} from peers, ${bytes(g.bytesFromRegistry)} from the registry, ${bytes(g.bytesLocal)} already here`}
        </li>`
      })}</ul>`}
    </section>`
}

/** Pulls an image to this node, peers first; its progress shows with the other pulls in progress. */
function PullForm ({ onDone }) {
  const [result, setResult] = useState(null)
  const [busy, setBusy] = useState(false)
  const submit = async (e) => {
    e.preventDefault()
    const ref = String(new FormData(e.currentTarget).get('ref')).trim()
    if (ref === '') return
    setBusy(true); setResult(null)
    try {
      const r = await fetch('/v1/images/pull', { method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ref }) })
      if (!r.ok || !r.body) { const v = await r.json().catch(() => ({})); throw new Error(v.error || `HTTP ${r.status}`) }
      await readNdjson(r, (events) => { for (const ev of events) if (ev.event !== 'progress') setResult(ev) })
      onDone()
    } catch (err) { setResult({ event: 'error', error: err.message }) } finally { setBusy(false) }
  }
  return html`
    <form class="inline" onSubmit=${submit} aria-label="Pull an image">
      <label>Pull an image <input name="ref" required placeholder="registry.example:5000/app:1" size="36" /></label>
      <button type="submit" disabled=${busy}>Pull</button>
    </form>
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
