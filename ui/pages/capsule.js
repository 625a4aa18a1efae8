// One capsule: its spec, its instances (live), its logs (follow, pause,
// search) and the actions stop, remove and scale.
import { useEffect, useRef, useState } from 'preact/hooks'
import { html, api, useStore, useApi, Badge, Labels, bytes, nameOf, readNdjson } from '../lib.js'
import { Chart } from './graphs.js'

/** Lines kept on the page. */
const MAX_LINES = 2000

export function CapsulePage ({ name }) {
  const s = useStore()
  const instances = s.capsules.filter(r => r.capsule === name)
  const key = instances.map(i => `${i.name}:${i.state}`).join(',')
  const [info, err] = useApi(`/v1/capsules/${encodeURIComponent(name)}`, [key])
  const [msg, setMsg] = useState(null)
  const act = async (what, method, path, body) => {
    try { await api(method, path, body); setMsg({ ok: true, text: what }) } catch (e) { setMsg({ ok: false, text: e.message }) }
  }
  const spec = info && info.spec
  const scale = async (e) => {
    e.preventDefault()
    const n = Number(new FormData(e.currentTarget).get('replicas'))
    if (!spec || !(n >= 1)) return
    // As `bolt-agent scale`: instances are added or removed, the others keep running.
    await act(`scaled to ${n}`, 'POST', `/v1/capsules/${encodeURIComponent(name)}/scale`, { replicas: n })
  }
  return html`
    <p><a href="#/capsules">← Capsules</a></p>
    <h1>Capsule <span data-testid="capsule-name">${name}</span></h1>
    ${err ? html`<p class="err" role="alert">${err}</p>` : ''}
    <div class="actions">
      <button type="button" onClick=${() => act('stopping', 'POST', `/v1/capsules/${encodeURIComponent(name)}/stop`)}>Stop</button>
      <button type="button" class="danger" onClick=${() => { if (confirm(`Remove ${name}?`)) act('removed', 'DELETE', `/v1/capsules/${encodeURIComponent(name)}`) }}>Remove</button>
      ${spec ? html`<form class="inline" onSubmit=${scale}><label>Replicas <input name="replicas" type="number" min="1" value=${spec.replicas} /></label> <button type="submit">Scale</button></form>` : ''}
      ${msg ? html`<span role="status" class=${msg.ok ? 'ok' : 'err'}>${msg.text}</span>` : ''}
    </div>
    <h2>Instances</h2>
    <div class="scroll"><table data-testid="instances">
      <thead><tr><th scope="col">Instance</th><th scope="col">State</th><th scope="col">Node</th><th scope="col">Restarts</th><th scope="col">Ports</th><th scope="col">Health</th><th scope="col">Reason</th></tr></thead>
      <tbody>${instances.length === 0 ? html`<tr><td colspan="7" class="muted">No instances.</td></tr>` : instances.map(r => html`
        <tr key=${r.name} data-instance=${r.name} data-state=${r.state}>
          <th scope="row">${r.name}</th><td><${Badge} value=${r.state} />${r.exitCode != null ? ` (exit ${r.exitCode})` : ''}</td>
          <td>${r.nodeName || r.node || 'unplaced'}</td><td>${r.restarts}</td>
          <td>${(r.ports || []).map(p => `${p.host}→${p.container}/${p.proto}`).join(', ')}</td><td>${r.health || ''}</td><td class="wrap">${r.reason || ''}</td>
        </tr>`)}</tbody>
    </table></div>
    <${Stats} instances=${instances.filter(i => i.state === 'running')} />
    <${Logs} name=${name} running=${instances.some(i => i.state === 'running')} />
    ${spec ? html`
      <h2>Spec</h2>
      <dl class="spec">
        <div><dt>Image</dt><dd>${spec.image}</dd></div>
        <div><dt>Command</dt><dd><code>${(spec.args || []).join(' ')}</code></dd></div>
        <div><dt>Resources</dt><dd>${spec.resources.cpu} CPU, ${Math.round(spec.resources.memoryBytes / 1048576)} MiB${spec.resources.gpus.count > 0 ? `, ${spec.resources.gpus.count} GPU` : ''}</dd></div>
        <div><dt>Network</dt><dd>${spec.network || 'bridge'}</dd></div>
        <div><dt>Labels</dt><dd data-testid="capsule-labels"><${Labels} labels=${spec.labels} /></dd></div>
        <div><dt>Node selectors</dt><dd><${Labels} labels=${spec.on} /></dd></div>
        <div><dt>Restart</dt><dd>${spec.restart.policy}</dd></div>
      </dl>
      <details><summary>Full spec (JSON)</summary><pre>${JSON.stringify(spec, null, 2)}</pre></details>` : ''}`
}

function Logs ({ name, running }) {
  const [lines, setLines] = useState([])
  const [paused, setPaused] = useState(false)
  const [search, setSearch] = useState('')
  const [follow, setFollow] = useState(true)
  const [gen, setGen] = useState(0)
  const pausedRef = useRef(false)
  const held = useRef([])
  const box = useRef(null)
  pausedRef.current = paused
  useEffect(() => {
    // Streams while the page is open; a stream that ends (the instance stopped, the agent restarted) is opened again when `running` changes.
    const ac = new AbortController()
    setLines([])
    ;(async () => {
      const r = await fetch(`/v1/logs/${encodeURIComponent(name)}?follow=1&tail=200`, { signal: ac.signal, credentials: 'same-origin' })
      if (!r.ok || !r.body) return
      await readNdjson(r, (got) => {
        if (pausedRef.current) { held.current.push(...got); return }
        setLines(prev => [...prev, ...got].slice(-MAX_LINES))
      }, true)
    })().catch(() => {})
    return () => ac.abort()
  }, [name, running, gen])
  useEffect(() => {
    if (!paused && held.current.length > 0) { const h = held.current; held.current = []; setLines(prev => [...prev, ...h].slice(-MAX_LINES)) }
  }, [paused])
  useEffect(() => { if (follow && box.current) box.current.scrollTop = box.current.scrollHeight }, [lines, follow])
  const shown = search === '' ? lines : lines.filter(l => l.line.includes(search))
  return html`
    <section aria-labelledby="logs-h">
      <h2 id="logs-h">Logs</h2>
      <div class="logbar">
        <label><input type="checkbox" checked=${follow} onChange=${e => setFollow(e.currentTarget.checked)} /> Follow</label>
        <button type="button" aria-pressed=${paused} onClick=${() => setPaused(p => !p)}>${paused ? `Resume (${held.current.length} held)` : 'Pause'}</button>
        <button type="button" onClick=${() => setGen(g => g + 1)}>Reload</button>
        <label>Search <input type="search" value=${search} onInput=${e => setSearch(e.currentTarget.value)} /></label>
        <span class="muted">${shown.length} of ${lines.length} lines</span>
      </div>
      <pre class="logs" ref=${box} tabindex="0" aria-label="Log lines" data-testid="logs">${shown.map((l, i) => html`<div key=${i} class=${l.stream}><span class="muted">${l.instance && l.instance !== name ? `${l.instance} ` : ''}${new Date(l.time).toLocaleTimeString()} </span>${l.line}</div>`)}</pre>
    </section>`
}

/** Samples kept a graph (5 s apart: the last 10 minutes). */
const STATS_SAMPLES = 120
const STATS_MS = 5000

/** CPU and memory of the running instances, read by the node that runs each (this agent asks it), sampled while the page is open. */
function Stats ({ instances }) {
  const s = useStore()
  const names = instances.map(i => i.name).join(',')
  const [series, setSeries] = useState({})
  const [missing, setMissing] = useState([])
  useEffect(() => {
    if (names === '') return
    let live = true
    const last = {}
    const tick = async () => {
      const why = []
      await Promise.all(names.split(',').map(async (n) => {
        const r = await api('GET', `/v1/ui/stats/${encodeURIComponent(n)}`).catch((e) => ({ error: e.message }))
        if (!live) return
        if (r.error) why.push({ name: n, node: r.node, error: r.error })
        if (!r.stats) return
        const prev = last[n]
        last[n] = r
        // Rates divide by differences of the reading node's clock; an instance that moved starts again.
        if (!prev || !prev.stats || prev.node !== r.node || r.time <= prev.time) return
        const cpu = Math.max(0, (r.stats.cpuNanos - prev.stats.cpuNanos) / 1e6 / (r.time - prev.time) * 100)
        setSeries(old => {
          const o = old[n] || { time: [], cpu: [], mem: [] }
          return { ...old, [n]: { time: [...o.time, Date.now() / 1000].slice(-STATS_SAMPLES), cpu: [...o.cpu, Math.round(cpu * 10) / 10].slice(-STATS_SAMPLES), mem: [...o.mem, r.stats.memoryBytes].slice(-STATS_SAMPLES) } }
        })
      }))
      if (live) setMissing(why)
    }
    tick()
    const timer = setInterval(tick, STATS_MS)
    return () => { live = false; clearInterval(timer) }
  }, [names])
  if (names === '') return ''
  const ready = Object.entries(series).filter(([n, d]) => d.time.length > 0 && names.split(',').includes(n))
  return html`
    <section aria-labelledby="stats-h">
      <h2 id="stats-h">CPU and memory</h2>
      ${missing.length > 0 ? html`<ul class="plain muted">${missing.map(m => html`<li key=${m.name}>${m.name}${m.node ? ` on ${nameOf(s.status, m.node)}` : ''}: ${m.error}</li>`)}</ul>` : ''}
      ${ready.length === 0 ? html`<p class="muted">Sampling every 5 s…</p>` : ''}
      <div class="charts" data-testid="stats">${ready.map(([n, d]) => html`
        <${Chart} key=${`${n}-cpu`} def=${{ title: `${n}: CPU (% of one core)`, series: [['cpu', 'CPU %']] }} data=${d} />
        <${Chart} key=${`${n}-mem`} def=${{ title: `${n}: memory`, series: [['mem', 'memory']], fmt: bytes }} data=${d} />`)}</div>
    </section>`
}
