// The agent's own figures over the last hour, from its in-memory ring
// (GET /v1/ui/metrics), extended live by the stream's samples.
import { useEffect, useRef } from 'preact/hooks'
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'
import { html, useApi, useStore, bytes } from '../lib.js'

const CHARTS = [
  { title: 'CPU (% of one core)', series: [['cpu', 'CPU %']] },
  { title: 'Resident memory', series: [['rss', 'RSS']], fmt: bytes },
  { title: 'Image bytes per second', series: [['peerBytes', 'from peers'], ['registryBytes', 'from registries']], fmt: bytes },
  { title: 'Raft commits per second', series: [['commits', 'commits/s']] },
  { title: 'Capsule instances running', series: [['running', 'running']] }
]
const COLORS = ['#1565c0', '#c62828']

export function Chart ({ def, data }) {
  const el = useRef(null)
  const plot = useRef(null)
  useEffect(() => {
    const width = Math.max(260, Math.min(560, (el.current.clientWidth || 560)))
    const opts = {
      width, height: 180, title: def.title,
      series: [{}, ...def.series.map(([, label], i) => ({ label, stroke: COLORS[i], width: 2, value: def.fmt ? (_u, v) => v == null ? '' : def.fmt(v) : undefined }))],
      axes: [{}, { size: 70, values: def.fmt ? (_u, vals) => vals.map(v => def.fmt(v)) : undefined }]
    }
    plot.current = new uPlot(opts, cols(def, data), el.current)
    return () => { plot.current.destroy(); plot.current = null }
  }, [])
  useEffect(() => { if (plot.current) plot.current.setData(cols(def, data)) }, [data])
  return html`<figure class="chart" ref=${el} aria-label=${def.title}></figure>`
}

function cols (def, data) { return [data.time, ...def.series.map(([k]) => data[k])] }

export function GraphsPage () {
  const [ring, err] = useApi('/v1/ui/metrics')
  const s = useStore()
  const data = useRef(null)
  if (ring && data.current === null) data.current = ring
  // Append each live sample once (by time).
  const d = data.current
  if (d && s.sample && (d.time.length === 0 || s.sample.time > d.time[d.time.length - 1])) {
    const next = {}
    for (const k of Object.keys(d)) next[k] = [...d[k], s.sample[k]].slice(-720)
    data.current = next
  }
  if (err) return html`<p class="err" role="alert">${err}</p>`
  if (!data.current) return html`<p>Loading…</p>`
  return html`
    <h1>Graphs</h1>
    <p class="muted">This agent's own figures every 5 s for the last hour (kept in memory by the agent; ${data.current.time.length} samples).</p>
    <div class="charts">${CHARTS.map(c => html`<${Chart} key=${c.title} def=${c} data=${data.current} />`)}</div>`
}
