// The dashboard's entry: a header with the pages, the live stream, and a
// hash router (#/cluster, #/capsules, #/capsule/NAME, ...).
import { render } from 'preact'
import { useEffect, useRef, useState } from 'preact/hooks'
import { html, connect, useStore } from './lib.js'
import { ClusterPage } from './pages/cluster.js'
import { CapsulesPage } from './pages/capsules.js'
import { CapsulePage } from './pages/capsule.js'
import { ImagesPage, ObjectsPage, MirrorPage, RaftPage } from './pages/data.js'
import { GraphsPage } from './pages/graphs.js'
import './style.css'

const PAGES = [
  ['cluster', 'Cluster'], ['capsules', 'Capsules'], ['graphs', 'Graphs'], ['images', 'Images'],
  ['objects', 'Objects'], ['mirror', 'Mirror'], ['raft', 'Raft']
]

function useRoute () {
  const get = () => (location.hash.replace(/^#\/?/, '') || 'cluster').split('/').map(decodeURIComponent)
  const [route, setRoute] = useState(get())
  useEffect(() => {
    const on = () => setRoute(get())
    addEventListener('hashchange', on)
    return () => removeEventListener('hashchange', on)
  }, [])
  return route
}

function Page ({ route }) {
  switch (route[0]) {
    case 'capsules': return html`<${CapsulesPage} />`
    case 'capsule': return html`<${CapsulePage} name=${route[1] || ''} />`
    case 'graphs': return html`<${GraphsPage} />`
    case 'images': return html`<${ImagesPage} />`
    case 'objects': return html`<${ObjectsPage} />`
    case 'mirror': return html`<${MirrorPage} />`
    case 'raft': return html`<${RaftPage} />`
    default: return html`<${ClusterPage} />`
  }
}

function App () {
  const route = useRoute()
  const s = useStore()
  const current = route[0] === 'capsule' ? 'capsules' : route[0]
  // A new page starts at its top, with the focus on its content (for keyboards and screen readers).
  const first = useRef(true)
  useEffect(() => {
    if (first.current) { first.current = false; return }
    scrollTo(0, 0)
    document.getElementById('main')?.focus({ preventScroll: true })
  }, [route.join('/')])
  useEffect(() => { document.title = `${PAGES.find(p => p[0] === current)?.[1] || 'Cluster'} · bolt-agent` }, [current])
  return html`
    <a class="skip" href="#main">Skip to content</a>
    <header>
      <div class="brand">bolt-agent${s.status ? html` <span class="node">${s.status.node.name}</span>` : ''}</div>
      <nav aria-label="Pages"><ul>
        ${PAGES.map(([id, label]) => html`<li key=${id}><a href=${`#/${id}`} aria-current=${current === id ? 'page' : undefined}>${label}</a></li>`)}
      </ul></nav>
      <div class=${`conn ${s.connected ? 'on' : 'off'}`} role="status" aria-live="polite" data-testid="connection">${s.connected ? 'live' : 'reconnecting…'}</div>
    </header>
    <main id="main" tabindex="-1"><${Page} route=${route} /></main>`
}

connect()
const root = document.getElementById('app')
root.textContent = ''
render(html`<${App} />`, root)
