// Bring a stack up or down from pasted TOML (the format of `bolt-agent up -f`):
// the agent parses it and answers the plan; this page creates the capsules
// in depends_on order, each once the previous one runs (healthy when it has
// a check), and removes them in reverse order.
import { useState } from 'preact/hooks'
import { html, api, useStore } from '../lib.js'

const EXAMPLE = `[capsules.db]
image = "bolt.local/busybox:demo"
args = ["/bin/sh", "-c", "echo db up; sleep 3600"]
network = "none"

[capsules.web]
image = "bolt.local/busybox:demo"
args = ["/bin/sh", "-c", "echo web up; sleep 3600"]
network = "none"
depends_on = ["db"]
`

/** BOLT_SERVICE_<NAME>=addr:port,... over healthy instances (as agent/stack.ts's serviceEnv). */
function serviceEnv (deps, catalog) {
  const out = {}
  for (const d of deps) {
    const s = catalog.find(x => x.name === d.service)
    const list = ((s && s.instances) || []).filter(i => i.health === 'healthy').flatMap(i => i.ports.map(p => i.address.includes(':') ? `[${i.address}]:${p.host}` : `${i.address}:${p.host}`))
    if (list.length > 0) out[`BOLT_SERVICE_${d.service.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`] = list.join(',')
  }
  return out
}

const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

export function StackForm () {
  const store = useStore()
  const [text, setText] = useState(EXAMPLE)
  const [log, setLog] = useState([])
  const [busy, setBusy] = useState(false)
  const say = (line, ok = true) => setLog(l => [...l, { line, ok }])
  const plan = async () => await api('POST', '/v1/ui/stack', { toml: text })

  const up = async () => {
    setBusy(true); setLog([])
    try {
      const p = await plan()
      for (const step of p.steps) {
        let env = {}
        if (step.deps.length > 0) {
          const until = Date.now() + 10_000
          for (;;) {
            env = serviceEnv(step.deps, await api('GET', '/v1/services'))
            if (Object.keys(env).length === step.deps.length || Date.now() > until) break
            await sleep(250)
          }
        }
        try {
          await api('POST', '/v1/capsules', { ...step.spec, env: { ...env, ...step.spec.env } })
          say(`${step.name}: submitted`)
        } catch (err) {
          if (!/exists/.test(err.message)) throw err
          say(`${step.name}: already there`)
        }
        const deadline = Date.now() + step.timeoutMs
        for (;;) {
          const mine = store.capsules.filter(r => r.capsule === step.name)
          const failed = mine.find(r => r.state === 'failed')
          if (failed) throw new Error(`${failed.name} failed (${failed.reason || 'no reason'}); later capsules not started`)
          if (mine.length > 0 && mine.every(r => r.state === 'running' && (!step.waitHealthy || r.health === 'healthy'))) break
          if (Date.now() > deadline) throw new Error(`${step.name} not ${step.waitHealthy ? 'healthy' : 'running'} within ${step.timeoutMs} ms`)
          await sleep(300)
        }
        say(`${step.name}: running`)
      }
      say('stack up')
    } catch (err) { say(err.message, false) } finally { setBusy(false) }
  }

  const down = async () => {
    setBusy(true); setLog([])
    try {
      const p = await plan()
      for (const step of [...p.steps].reverse()) {
        try { await api('DELETE', `/v1/capsules/${encodeURIComponent(step.name)}`); say(`${step.name}: removed`) } catch (err) { say(`${step.name}: ${err.message}`, !/no capsule/.test(err.message) ? false : true) }
      }
      say('stack down')
    } catch (err) { say(err.message, false) } finally { setBusy(false) }
  }

  return html`
    <section aria-labelledby="stack-h">
      <h2 id="stack-h">Stack from TOML</h2>
      <p class="muted">The format of <code>bolt-agent up -f stack.toml</code>: capsules start in <code>depends_on</code> order, each once the one before it runs.</p>
      <label class="block">Stack file <textarea name="stack" rows="10" spellcheck="false" value=${text} onInput=${e => setText(e.currentTarget.value)}></textarea></label>
      <div class="actions"><button type="button" disabled=${busy} onClick=${up} data-testid="stack-up">Up</button> <button type="button" class="danger" disabled=${busy} onClick=${down} data-testid="stack-down">Down</button></div>
      ${log.length > 0 ? html`<ol class="plain" role="log" data-testid="stack-log">${log.map((l, i) => html`<li key=${i} class=${l.ok ? 'ok' : 'err'}>${l.line}</li>`)}</ol>` : ''}
    </section>`
}
