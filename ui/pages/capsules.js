// Capsules: every instance with its state, node, restarts, ports and
// health, live; and the form that runs a new capsule.
import { useState } from 'preact/hooks'
import { html, api, useStore, Badge } from '../lib.js'
import { StackForm } from './stack.js'

function ports (list) {
  return (list || []).map(p => `${p.host}→${p.container}/${p.proto}`).join(', ')
}

export function CapsulesPage () {
  const s = useStore()
  const [filter, setFilter] = useState('')
  const rows = s.capsules.filter(r => filter === '' || r.name.includes(filter) || r.image.includes(filter) || (r.nodeName || '').includes(filter) || r.state === filter)
  return html`
    <h1>Capsules</h1>
    <p><label>Filter <input type="search" value=${filter} onInput=${e => setFilter(e.currentTarget.value)} placeholder="name, image, node or state" /></label>
      <span class="muted"> ${s.capsules.length} instances, ${s.capsules.filter(r => r.state === 'running').length} running</span></p>
    <div class="scroll"><table class="capsules" data-testid="capsule-table">
      <thead><tr><th scope="col">Instance</th><th scope="col">Image</th><th scope="col">State</th><th scope="col">Node</th><th scope="col">Restarts</th><th scope="col">Ports</th><th scope="col">Health</th><th scope="col">Reason</th></tr></thead>
      <tbody>${rows.length === 0 ? html`<tr><td colspan="8" class="muted">No capsules${filter ? ' match' : ''}.</td></tr>` : rows.map(r => html`
        <tr key=${r.name} data-capsule=${r.name} data-state=${r.state}>
          <th scope="row"><a href=${`#/capsule/${encodeURIComponent(r.capsule)}`}>${r.name}</a></th>
          <td class="wrap">${r.image}</td>
          <td><${Badge} value=${r.state} />${r.exitCode != null ? html` <span class="muted">(exit ${r.exitCode})</span>` : ''}</td>
          <td>${r.nodeName || r.node || html`<span class="muted">unplaced</span>`}</td>
          <td>${r.restarts}</td>
          <td>${ports(r.ports)}</td>
          <td>${r.health || ''}</td>
          <td class="wrap">${r.reason || ''}</td>
        </tr>`)}
      </tbody>
    </table></div>
    <${RunForm} />
    <${StackForm} />`
}

function pairs (text) {
  const out = {}
  for (const line of text.split(/[\n,]/).map(l => l.trim()).filter(Boolean)) {
    const i = line.indexOf('=')
    if (i <= 0) throw new Error(`"${line}" is not KEY=VALUE`)
    out[line.slice(0, i).trim()] = line.slice(i + 1)
  }
  return out
}

/** Splits a command line on spaces, keeping 'single' and "double" quoted parts whole. */
function words (text) {
  const out = []
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g
  let m
  while ((m = re.exec(text)) !== null) out.push(m[1] ?? m[2] ?? m[3])
  return out
}

export function RunForm () {
  const [msg, setMsg] = useState(null)
  const [busy, setBusy] = useState(false)
  const submit = async (e) => {
    e.preventDefault()
    const f = new FormData(e.currentTarget)
    try {
      const spec = {
        name: String(f.get('name')).trim(),
        image: String(f.get('image')).trim(),
        args: words(String(f.get('args'))),
        env: pairs(String(f.get('env'))),
        labels: pairs(String(f.get('labels'))),
        on: pairs(String(f.get('on'))),
        replicas: Number(f.get('replicas')) || 1,
        network: String(f.get('network')),
        resources: { cpu: Number(f.get('cpu')) || 0.1, memoryBytes: Math.round((Number(f.get('memory')) || 64) * 1024 * 1024), gpus: { count: Number(f.get('gpus')) || 0 } }
      }
      setBusy(true)
      await api('POST', '/v1/capsules', spec)
      setMsg({ ok: true, text: `submitted ${spec.name}` })
      location.hash = `#/capsule/${encodeURIComponent(spec.name)}`
    } catch (err) {
      setMsg({ ok: false, text: err.message })
    } finally { setBusy(false) }
  }
  return html`
    <section aria-labelledby="run-h">
      <h2 id="run-h">Run a capsule</h2>
      <form class="run" onSubmit=${submit} data-testid="run-form">
        <label>Name <input name="name" required pattern="[a-z0-9][a-z0-9_.\\-]{0,62}" autocomplete="off" /></label>
        <label>Image <input name="image" required value="bolt.local/busybox:demo" /></label>
        <label class="wide">Command <input name="args" placeholder="/bin/sh -c 'echo hi; sleep 60'" /></label>
        <label>Replicas <input name="replicas" type="number" min="1" value="1" /></label>
        <label>CPUs <input name="cpu" type="number" min="0" step="0.05" value="0.1" /></label>
        <label>Memory (MiB) <input name="memory" type="number" min="4" value="64" /></label>
        <label>GPUs <input name="gpus" type="number" min="0" value="0" /></label>
        <label>Network <select name="network"><option value="none">none</option><option value="bridge">bridge</option><option value="host">host</option></select></label>
        <label class="wide">Environment <textarea name="env" rows="2" placeholder="KEY=value, one a line"></textarea></label>
        <label class="wide">Labels <textarea name="labels" rows="2" placeholder="key=value, one a line"></textarea></label>
        <label class="wide">Node selectors <textarea name="on" rows="1" placeholder="zone=eu"></textarea></label>
        <div class="wide"><button type="submit" disabled=${busy}>Run</button>
          ${msg ? html` <span role="alert" class=${msg.ok ? 'ok' : 'err'}>${msg.text}</span>` : ''}</div>
      </form>
    </section>`
}
