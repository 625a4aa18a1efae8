// `bolt-agent status`: this node, the leader and every member as this agent
// sees them. Roles come from Raft's voters once it has any (the gossiped role
// is only a hint until then).
import type { MemberView } from './membership-host.js'

export interface StatusJson {
  node: { id: string, name: string, role: 'server' | 'client', addrs: string[] }
  leader: string | null
  term: number
  /** `connection`: how this agent reaches the member now (a direct or a relayed libp2p connection, or none open). */
  members: Array<MemberView & { connection?: 'direct' | 'relayed' | 'none' }>
}

export interface StatusInputs {
  self: { id: string, name: string, role: 'server' | 'client', addrs: string[] }
  raft: { leader: string | null, term: number, voters: string[] }
  members: MemberView[]
  connection: (peerId: string) => 'direct' | 'relayed' | 'none'
}

export function buildStatus ({ self, raft, members, connection }: StatusInputs): StatusJson {
  const voters = new Set(raft.voters)
  const roleOf = (id: string, gossiped: 'server' | 'client'): 'server' | 'client' => raft.voters.length > 0 ? (voters.has(id) ? 'server' : 'client') : gossiped
  return {
    node: { ...self, role: roleOf(self.id, self.role) },
    leader: raft.leader,
    term: raft.term,
    members: members.map(m => ({ ...m, role: roleOf(m.id, m.role), labels: publicLabels(m.labels), ...(m.id !== self.id ? { connection: connection(m.id) } : {}) }))
  }
}

/** Labels without the agent's own `bolt.` keys. */
function publicLabels (labels: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(labels).filter(([k]) => !k.startsWith('bolt.')))
}
