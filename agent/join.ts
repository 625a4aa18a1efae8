// `bolt-agent join`: asking members for admission, through the addresses
// given or, without any, through members of the token's cluster found over
// mDNS. Resolves with the seeds membership starts from: the admitting member
// and the members it listed.
import { multiaddr } from '@multiformats/multiaddr'
import type { Admission } from '../p2p/admission/admission.js'
import { AdmissionRejectedError, ImpostorError } from '../p2p/admission/errors.js'
import type { BoltLibp2p } from '../p2p/node.js'
import type { JoinToken } from '../p2p/token.js'
import { JoinFailedError, UserError } from './errors.js'

/** How long `join --token T` without an address searches the LAN. */
export const LAN_JOIN_TIMEOUT_MS = 30_000
/** One admission attempt through one address. */
const JOIN_TIMEOUT_MS = 10_000

export interface Joiner {
  libp2p: BoltLibp2p
  admission: Admission
  /** This node's peer id. */
  self: string
  /** Aborts when the agent stops. */
  signal: AbortSignal
}

export type Seed = { id: string, addrs: string[] }

/** Tries each address in turn until a member admits us; the error lists why each failed. */
export async function joinThrough (j: Joiner, addrs: string[], token: JoinToken): Promise<Seed[]> {
  const failures: string[] = []
  for (const a of addrs.flatMap(joinAddrs)) {
    let ma
    try {
      ma = multiaddr(a)
    } catch {
      throw new UserError(`join failed: ${a} is not a multiaddr or HOST:PORT (expected e.g. 10.0.0.5:7946, quic://10.0.0.5:7946, or /ip4/10.0.0.5/udp/7946/quic-v1/p2p/12D3KooW...)`, 2)
    }
    const host = ma.getComponents().find(c => ['ip4', 'ip6', 'dns', 'dns4', 'dns6'].includes(c.name))?.value ?? a
    try {
      const res = await j.admission.join(ma, token, AbortSignal.any([AbortSignal.timeout(JOIN_TIMEOUT_MS), j.signal]))
      const seedAddrs = [ma.getComponents().some(c => c.name === 'p2p') ? ma.decapsulate('/p2p').toString() : ma.toString()]
      return [{ id: res.peerId, addrs: seedAddrs }, ...res.members.filter(m => m.id !== j.self && m.id !== res.peerId)]
    } catch (err) {
      if (err instanceof AdmissionRejectedError) {
        failures.push(err.reason === 'token' ? `${host} rejected the token (check --token)` : `${host} ${err.message}`)
      } else if (err instanceof ImpostorError) {
        failures.push(`${host} is not the cluster the token names (${err.message})`)
      } else {
        failures.push(`cannot reach ${host} (${shortReason(err as Error)})`)
      }
    }
  }
  throw new JoinFailedError(`join failed: ${failures.join('; ')}`)
}

/** `join --token T` without an address: members of the token's cluster found over mDNS, until one admits us. */
export async function joinOverLan (j: Joiner, token: JoinToken): Promise<Seed[]> {
  const signal = AbortSignal.any([AbortSignal.timeout(LAN_JOIN_TIMEOUT_MS), j.signal])
  const failures: string[] = []
  const search = new AbortController()
  // mDNS code loads only for a join that searches for members with it.
  const { searchLan } = await import('../p2p/discovery/lan.js')
  try {
    for await (const c of searchLan(j.libp2p, token.clusterId, AbortSignal.any([signal, search.signal]))) {
      const addrs = c.addrs.map(a => `${a}/p2p/${c.id}`)
      try {
        const seeds = await joinThrough(j, addrs, token)
        search.abort()
        return seeds
      } catch (err) {
        failures.push((err as Error).message.replace(/^join failed: /, ''))
      }
    }
  } catch (err) {
    if (!signal.aborted) throw err
  }
  if (j.signal.aborted) throw new JoinFailedError('join failed: the agent is stopping')
  throw new JoinFailedError(failures.length > 0
    ? `join failed: members found on the local network refused: ${failures.join('; ')}`
    : `join failed: no member of cluster ${token.clusterId} answered on the local network (mDNS) within ${LAN_JOIN_TIMEOUT_MS / 1000} s; give a member's address: bolt-agent join ADDR --token T`)
}

function shortReason (err: Error): string {
  const e = err as Error & { errors?: Error[] }
  const inner = e.errors?.[0]?.message ?? e.message
  return inner.split('\n')[0]?.slice(0, 160) ?? 'unknown error'
}

/**
 * What `join` dials for one address, as `serf join` takes them: `HOST:PORT`
 * (TCP, then QUIC on the same port, as an agent listens by default),
 * `tcp://HOST:PORT`, `quic://HOST:PORT`, or a multiaddr as is. No peer id is
 * needed: the token pins the cluster key, which admission checks.
 */
export function joinAddrs (a: string): string[] {
  if (a.startsWith('/')) return [a]
  const m = /^(?:(tcp|quic):\/\/)?(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):(\d{1,5})$/.exec(a)
  const port = Number(m?.[3])
  if (m === null || port < 1 || port > 65535) return [a] // left for the multiaddr parser to refuse with the usage line
  const host = m[2]!
  const base = host.startsWith('[') ? `/ip6/${host.slice(1, -1)}` : /^\d{1,3}(\.\d{1,3}){3}$/.test(host) ? `/ip4/${host}` : `/dns/${host}`
  const tcp = `${base}/tcp/${port}`
  const quic = `${base}/udp/${port}/quic-v1`
  return m[1] === 'tcp' ? [tcp] : m[1] === 'quic' ? [quic] : [tcp, quic]
}
