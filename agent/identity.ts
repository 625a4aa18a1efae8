// The node's place in its cluster: the data dir, the cluster file (cluster id,
// keys, join secret, role, seeds) and admission, which checks every
// connection against the cluster key. `init`, `join` and `start` differ only
// here; the components after it see a node that belongs to a cluster.
import { multiaddr } from '@multiformats/multiaddr'
import { Admission } from '../p2p/admission/admission.js'
import { keyVersionOf, type ClusterSecrets } from '../p2p/admission/secrets.js'
import type { BoltLibp2p } from '../p2p/node.js'
import { clusterKeyFingerprint, formatToken, newClusterId, newClusterKey, newSecret, type JoinToken } from '../p2p/token.js'
import { transportOf } from '../quic/transports.js'
import { ClusterFileStore, readClusterFile, type ClusterFile } from './cluster-file.js'
import { checkDataDirMode, refuseSecondAgent } from './data-dir.js'
import { AGENT_UMASK, secureDataDir } from './data-dir-mode.js'
import { UnknownMemberError, UserError } from './errors.js'
import { joinOverLan, joinThrough, type Seed } from './join.js'
import type { Logger } from './logger.js'
import { makeDirsSync } from './make-dirs.js'

export type AgentMode =
  | { kind: 'init' }
  | { kind: 'join', addrs: string[], token: JoinToken }
  | { kind: 'start' }

export interface TokenInfo { token: string, addrs: string[], join: string }

export interface IdentityInit {
  dataDir: string
  mode: AgentMode
  /** This node's name, for a data dir that has none yet. */
  name: string
  /** The configured role: `auto` is settled by Raft later. */
  role: 'server' | 'client' | 'auto'
  log: Logger
}

/** What admission asks of membership, which starts after it. */
export interface AdmissionHooks {
  knownMember: (id: string) => boolean
  members: () => Array<{ id: string, addrs: string[] }>
}

export class ClusterIdentity {
  private fileStore: ClusterFileStore | undefined
  private adm: Admission | undefined
  /** Whether a cluster file existed when the agent started. */
  private existing: ClusterFile | undefined

  constructor (private readonly o: IdentityInit) {}

  get file (): ClusterFileStore { return must(this.fileStore, 'cluster file') }
  get admission (): Admission { return must(this.adm, 'admission') }
  get role (): 'server' | 'client' { return this.file.get().role }

  /** Checks and locks the data dir, reads the cluster file, builds admission. */
  async prepare (hooks: AdmissionHooks): Promise<void> {
    const { dataDir, log } = this.o
    // Before the first file: nothing the agent writes is for other users.
    process.umask(AGENT_UMASK)
    try {
      makeDirsSync(dataDir)
    } catch (err) {
      throw new UserError(`cannot create the data dir ${dataDir}: ${(err as Error).message} (choose another with --data)`)
    }
    const fixed = await secureDataDir(dataDir)
    if (fixed !== undefined) log.warn(fixed)
    await refuseSecondAgent(dataDir)
    this.existing = checkDataDirMode(this.o.mode.kind, dataDir, await readClusterFile(dataDir))
    const store = new ClusterFileStore(dataDir, this.existing ?? placeholderFile(this.o.name))
    this.fileStore = store
    const persist = (what: string) => (err: Error): void => { log.error({ err }, `cannot persist ${what}`) }
    this.adm = new Admission({
      ...(this.existing !== undefined ? { secrets: secretsOf(this.existing) } : {}),
      evicted: this.existing?.evicted ?? [],
      onSecrets: (s) => { void store.update({ ...s }).catch(persist('cluster secrets')) },
      onEvicted: (ids) => { void store.update({ evicted: ids }).catch(persist('the evicted list')) },
      knownMember: hooks.knownMember,
      members: hooks.members,
      log: (m) => log.debug(m)
    })
  }

  /** The role this node starts in, before Raft has said anything. */
  initialRole (): 'server' | 'client' {
    if (this.existing !== undefined) return this.existing.role
    if (this.o.mode.kind === 'init') return 'server'
    // `auto` is settled by Raft once it knows the voter count; until then a
    // joiner runs as a server for the DHT and takes the Raft role it is given.
    return this.o.role === 'client' ? 'client' : 'server'
  }

  /**
   * Makes this node a member: a new cluster (init), admission through a seed
   * (join), or the seeds it remembers (start). Returns the seeds to gossip with.
   */
  async establish (libp2p: BoltLibp2p, signal: AbortSignal): Promise<Seed[]> {
    const mode = this.o.mode
    if (mode.kind === 'init') {
      await this.file.update({ clusterId: newClusterId(), clusterKey: newClusterKey(), joinSecret: newSecret(), secretVersion: 1, role: 'server', left: false })
      this.admission.setSecrets(secretsOf(this.file.get()))
      return []
    }
    if (mode.kind === 'join') {
      const joiner = { libp2p, admission: this.admission, self: libp2p.peerId.toString(), signal }
      const seeds = mode.addrs.length > 0 ? await joinThrough(joiner, mode.addrs, mode.token) : await joinOverLan(joiner, mode.token)
      const seedLines = seeds.flatMap(s => s.addrs.slice(0, 2).map(a => `${a}/p2p/${s.id}`)).slice(0, 16)
      await this.file.update({ role: this.initialRole(), left: false, evicted: [], seeds: seedLines })
      return seeds
    }
    return this.file.get().seeds.map(parseSeed).filter((s): s is Seed => s !== undefined)
  }

  tokenInfo (addrs: string[]): TokenInfo {
    const f = this.file.get()
    const token = formatToken({ clusterId: f.clusterId, fingerprint: clusterKeyFingerprint(Buffer.from(f.clusterKey, 'hex')), secret: f.joinSecret })
    return { token, addrs, join: `bolt-agent join ${preferredJoinAddr(addrs)} --token ${token}` }
  }

  /**
   * `bolt-agent evict NODE`: removes a member for good (by name or peer id).
   * Its peer id is refused, the cluster key and join secret are replaced
   * (members are handed the new key as they next prove the old one), and
   * Raft and the scheduler treat it as gone. The token changes.
   */
  async evict (node: string, members: Array<{ id: string, name: string }>, self: string): Promise<{ id: string, name: string, keyVersion: number }> {
    const matches = members.filter(m => m.id === node || m.name === node)
    if (matches.length === 0) throw new UnknownMemberError(`no member named ${node} (see bolt-agent status)`)
    if (matches.length > 1) throw new UnknownMemberError(`${matches.length} members are named ${node}: evict by id (${matches.map(m => m.id).join(', ')})`)
    const victim = matches[0]!
    if (victim.id === self) throw new UnknownMemberError(`${node} is this node: run evict on another member, or leave`)
    const s = this.admission.evict(victim.id, { clusterKey: newClusterKey(), joinSecret: newSecret() })
    await this.file.update({ ...secretsOf({ ...this.file.get(), ...s, keyVersion: keyVersionOf(s) }), evicted: this.admission.evictedPeers() })
    this.o.log.info({ member: victim.id, name: victim.name, keyVersion: keyVersionOf(s) }, 'member evicted; cluster key and token replaced')
    return { id: victim.id, name: victim.name, keyVersion: keyVersionOf(s) }
  }

  async rotateSecret (): Promise<void> {
    this.admission.rotate(newSecret())
    await this.file.update({ ...secretsOf({ ...this.file.get(), ...this.admission.clusterSecrets() }) })
  }

  async stop (): Promise<void> {
    await this.adm?.stop()
  }
}

function must<T> (v: T | undefined, what: string): T {
  if (v === undefined) throw new Error(`${what} used before the agent prepared its data dir`)
  return v
}

function secretsOf (f: Pick<ClusterFile, 'clusterId' | 'clusterKey' | 'joinSecret' | 'secretVersion' | 'keyVersion' | 'previousKey'>): ClusterSecrets {
  return { clusterId: f.clusterId, clusterKey: f.clusterKey, joinSecret: f.joinSecret, secretVersion: f.secretVersion, keyVersion: f.keyVersion, ...(f.previousKey !== undefined ? { previousKey: f.previousKey } : {}) }
}

function placeholderFile (name: string): ClusterFile {
  const zero32 = '0'.repeat(64)
  return { version: 1, clusterId: '0'.repeat(16), clusterKey: zero32, keyVersion: 1, joinSecret: zero32, secretVersion: 0, name, role: 'server', incarnation: 0, seeds: [], evicted: [], left: false }
}

function parseSeed (s: string): Seed | undefined {
  try {
    const ma = multiaddr(s)
    const id = ma.getComponents().find(c => c.name === 'p2p')?.value
    if (id === undefined) return undefined
    return { id, addrs: [ma.decapsulate('/p2p').toString()] }
  } catch { return undefined } // not a multiaddr with a peer id: a seed line from an older file, skipped
}

/** The address to print in a join command: a non-loopback QUIC one if any, else any QUIC, else the first. */
export function preferredJoinAddr (addrs: string[]): string {
  const quic = addrs.filter(a => transportOf(a) === 'quic')
  const notLoop = (a: string): boolean => !a.startsWith('/ip4/127.') && !a.startsWith('/ip6/::1/')
  return quic.find(notLoop) ?? quic[0] ?? addrs.find(notLoop) ?? addrs[0] ?? ''
}
