// Cluster: every member with its state, role, the leader, connection,
// resources, GPUs and labels; and the timeline of membership events.
import { html, useStore, bytes, shortId, Badge, Labels, nameOf } from '../lib.js'

export function ClusterPage () {
  const s = useStore()
  const st = s.status
  if (!st) return html`<p>Waiting for the agent…</p>`
  const alive = st.members.filter(m => m.state === 'alive').length
  return html`
    <h1>Cluster</h1>
    <dl class="facts">
      <div><dt>Leader</dt><dd data-testid="leader">${st.leader ? nameOf(st, st.leader) : 'none (electing)'}</dd></div>
      <div><dt>Term</dt><dd>${st.term}</dd></div>
      <div><dt>Members alive</dt><dd>${alive} of ${st.members.length}</dd></div>
      <div><dt>This node</dt><dd>${st.node.name} (${st.node.role})</dd></div>
    </dl>
    <h2>Members</h2>
    <div class="scroll"><table class="members">
      <thead><tr><th scope="col">Name</th><th scope="col">State</th><th scope="col">Role</th><th scope="col">Connection</th><th scope="col">Version</th><th scope="col">CPUs</th><th scope="col">Memory</th><th scope="col">GPUs</th><th scope="col">Labels</th></tr></thead>
      <tbody>${st.members.map(m => html`
        <tr key=${m.id} data-member=${m.name} data-state=${m.state}>
          <th scope="row"><span title=${m.id}>${m.name}</span>${m.id === st.leader ? html` <span class="leader" data-testid="leader-mark">leader</span>` : ''}${m.id === st.node.id ? html` <span class="muted">(this node)</span>` : ''}<div class="muted small">${shortId(m.id)}</div></th>
          <td><${Badge} value=${m.state} /></td>
          <td>${m.role}</td>
          <td>${m.connection || (m.id === st.node.id ? 'self' : '')}</td>
          <td>${m.version || ''}</td>
          <td>${m.resources ? m.resources.cpus : ''}</td>
          <td>${m.resources ? bytes(m.resources.memoryBytes) : ''}</td>
          <td>${m.resources && m.resources.gpus.length > 0 ? html`<ul class="plain">${m.resources.gpus.map(g => html`<li key=${g.index}>${g.vendor} ${g.model} (${bytes(g.memoryBytes)})</li>`)}</ul>` : html`<span class="muted">none</span>`}</td>
          <td><${Labels} labels=${m.labels} /></td>
        </tr>`)}
      </tbody>
    </table></div>
    <h2>Membership events</h2>
    ${s.timeline.length === 0 ? html`<p class="muted">No events since this agent started.</p>` : html`
    <ol class="timeline" reversed>${[...s.timeline].reverse().slice(0, 50).map((e, i) => html`
      <li key=${`${e.time}-${i}`}><time datetime=${new Date(e.time).toISOString()}>${new Date(e.time).toLocaleTimeString()}</time> <strong>${e.name || shortId(e.id)}</strong> ${e.kind} <${Badge} value=${e.state} /></li>`)}
    </ol>`}`
}
