// Cluster admission. Every peer must prove, on each connection, that it holds
// the cluster's secret before any cluster protocol (SWIM, Raft, pieces, API,
// the private DHT, ping) answers it. Joiners prove the join secret from the
// token and receive the cluster key; members prove the cluster key to each
// other. The check sits on the stream handlers, so it holds on QUIC, TCP and
// relayed connections alike — unlike libp2p's pnet, which QUIC ignores.
import { setTimeout as delay } from 'node:timers/promises'
import { randomBytes } from 'node:crypto'
import { lpStream } from '@libp2p/utils'
import type { Connection, Libp2p, PeerId, Stream, StreamHandler } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { clusterKeyFingerprint, equalHex, type JoinToken } from '../token.js'
import { ADMIT_PROTOCOL, admissionMac, decodeAdmit, encodeAdmit, MAX_ADMIT_FRAME, type AdmitMessage } from './messages.js'

export interface ClusterSecrets {
  clusterId: string
  clusterKey: string
  joinSecret: string
  secretVersion: number
}

export interface AdmissionInit {
  /** Absent until this node has joined: then only `join()` works. */
  secrets?: ClusterSecrets
  /** Peers whose admission was revoked (left or evicted). */
  revoked?: Iterable<string>
  /** Called when secrets are learned or rotated, so the caller persists them. */
  onSecrets?: (s: ClusterSecrets) => void
  /** Members to hand a joiner in the welcome. */
  members?: () => Array<{ id: string, addrs: string[] }>
  /** How long an unadmitted inbound connection may stay open to run admission. */
  graceMs?: number
  /** Admission attempts allowed per remote peer in each window. */
  attemptsPerWindow?: number
  windowMs?: number
  /** How long a peer that failed a proof is refused. */
  banMs?: number
  log?: (msg: string) => void
}

export const DEFAULT_GRACE_MS = 10_000
export const DEFAULT_ATTEMPTS_PER_WINDOW = 5
export const DEFAULT_WINDOW_MS = 10_000
export const DEFAULT_BAN_MS = 30_000
const HANDSHAKE_TIMEOUT_MS = 5_000
/** Tries of `join` through one member when the connection breaks before it answers, and the pause before the next (times the try). */
export const JOIN_ATTEMPTS = 3
const JOIN_RETRY_MS = 300

export class AdmissionRejectedError extends Error {
  override name = 'AdmissionRejectedError'
  constructor (readonly reason: string, message: string) { super(message) }
}
export class ImpostorError extends Error {
  override name = 'ImpostorError'
}
export class NotAdmittedError extends Error {
  override name = 'NotAdmittedError'
}

export interface JoinResult {
  peerId: string
  members: Array<{ id: string, addrs: string[] }>
}

export class Admission {
  private secrets: ClusterSecrets | undefined
  private readonly admitted = new Set<string>()
  private readonly revoked: Set<string>
  private readonly attempts = new Map<string, { windowStart: number, count: number }>()
  private readonly banned = new Map<string, number>()
  /** Fault injection (scenarios, tests): peers cut off as if the network dropped everything. */
  private readonly blocked = new Set<string>()
  private readonly graceTimers = new Map<string, NodeJS.Timeout>()
  private readonly inflight = new Map<string, Promise<void>>()
  private readonly opts: Required<Omit<AdmissionInit, 'secrets' | 'revoked'>>
  private libp2p: Libp2p | undefined
  private readonly onConnOpen = (evt: CustomEvent<Connection>): void => { this.armGrace(evt.detail) }
  private readonly onPeerDisconnect = (evt: CustomEvent<PeerId>): void => {
    // A restarted peer loses its view of us; ask for proof again next time.
    this.admitted.delete(evt.detail.toString())
  }

  constructor (init: AdmissionInit = {}) {
    this.secrets = init.secrets
    this.revoked = new Set(init.revoked ?? [])
    this.opts = {
      onSecrets: init.onSecrets ?? (() => {}),
      members: init.members ?? (() => []),
      graceMs: init.graceMs ?? DEFAULT_GRACE_MS,
      attemptsPerWindow: init.attemptsPerWindow ?? DEFAULT_ATTEMPTS_PER_WINDOW,
      windowMs: init.windowMs ?? DEFAULT_WINDOW_MS,
      banMs: init.banMs ?? DEFAULT_BAN_MS,
      log: init.log ?? (() => {})
    }
  }

  /** For libp2p's connection gater: refuse peers banned after a failed proof. */
  isBanned (peerId: string): boolean {
    if (this.blocked.has(peerId)) return true
    const until = this.banned.get(peerId)
    if (until === undefined) return false
    if (Date.now() > until) { this.banned.delete(peerId); return false }
    return true
  }

  /** Installs the secrets of a cluster this node just created. */
  setSecrets (s: ClusterSecrets): void { this.secrets = s }

  isAdmitted (peerId: string): boolean { return this.admitted.has(peerId) && !this.revoked.has(peerId) && !this.blocked.has(peerId) }

  /** Fault hook: cuts this node off from `peers` (replacing any earlier cut); [] heals. */
  partition (peers: string[]): void {
    this.blocked.clear()
    for (const p of peers) this.blocked.add(p)
    for (const c of this.libp2p?.getConnections() ?? []) {
      if (this.blocked.has(c.remotePeer.toString())) c.abort(new Error('partitioned by fault hook'))
    }
  }

  blockedPeers (): string[] { return [...this.blocked] }
  clusterSecrets (): ClusterSecrets | undefined { return this.secrets }

  async start (libp2p: Libp2p): Promise<void> {
    this.libp2p = libp2p
    // Relayed connections with relay limits are "limited": admission must still run on them.
    await libp2p.handle(ADMIT_PROTOCOL, (stream, conn) => { void this.handleInbound(stream, conn) }, { maxInboundStreams: 4, runOnLimitedConnection: true })
    libp2p.addEventListener('connection:open', this.onConnOpen)
    libp2p.addEventListener('peer:disconnect', this.onPeerDisconnect)
  }

  async stop (): Promise<void> {
    this.libp2p?.removeEventListener('connection:open', this.onConnOpen)
    this.libp2p?.removeEventListener('peer:disconnect', this.onPeerDisconnect)
    for (const t of this.graceTimers.values()) clearTimeout(t)
    this.graceTimers.clear()
  }

  revoke (peerId: string): void {
    this.revoked.add(peerId)
    this.admitted.delete(peerId)
    for (const c of this.libp2p?.getConnections() ?? []) {
      if (c.remotePeer.toString() === peerId) void c.close().catch(() => {})
    }
  }

  unrevoke (peerId: string): void { this.revoked.delete(peerId) }
  revokedPeers (): string[] { return [...this.revoked] }

  /** Issues a new join secret; admitted members are undisturbed and learn it on their next handshake. */
  rotate (newSecret: string): ClusterSecrets {
    if (this.secrets === undefined) throw new Error('this node has not joined a cluster')
    this.secrets = { ...this.secrets, joinSecret: newSecret, secretVersion: this.secrets.secretVersion + 1 }
    this.opts.onSecrets(this.secrets)
    // Push the new secret to connected members by re-running the handshake.
    for (const id of [...this.admitted]) {
      this.admitted.delete(id)
      void this.ensureAdmitted(id).catch(() => {})
    }
    return this.secrets
  }

  /**
   * Wraps a stream handler so that it serves only admitted peers. A connected
   * peer that is not yet admitted (e.g. we restarted) is asked for proof once
   * over the same connection before its stream is refused.
   */
  guard (handler: StreamHandler): StreamHandler {
    return (stream, conn) => {
      const peer = conn.remotePeer.toString()
      if (this.isAdmitted(peer)) return handler(stream, conn)
      if (this.secrets === undefined || this.revoked.has(peer) || this.blocked.has(peer)) { stream.abort(new NotAdmittedError('not admitted')); return }
      void this.ensureAdmitted(peer, AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS)).then(
        async () => { await handler(stream, conn) },
        () => { stream.abort(new NotAdmittedError('not admitted')) }
      ).catch((err: Error) => {
        // libp2p's registrar catches a handler's rejection; here we called it, so we must
        // (kad-dht's handler rejects on a peer's EOF, which would end the process).
        stream.abort(err)
      })
    }
  }

  /** Makes sure the peer and this node have proved the cluster key to each other. */
  async ensureAdmitted (peerId: string, signal?: AbortSignal): Promise<void> {
    if (this.isAdmitted(peerId)) return
    const running = this.inflight.get(peerId)
    if (running !== undefined) { await running; return }
    const p = this.memberHandshake(peerId, signal).finally(() => this.inflight.delete(peerId))
    this.inflight.set(peerId, p)
    await p
  }

  private async memberHandshake (peerId: string, signal?: AbortSignal): Promise<void> {
    const libp2p = this.requireLibp2p()
    const secrets = this.secrets
    if (secrets === undefined) throw new NotAdmittedError('this node has not joined a cluster')
    if (this.revoked.has(peerId)) throw new NotAdmittedError(`${peerId} was removed from the cluster`)
    if (this.blocked.has(peerId)) throw new NotAdmittedError(`${peerId} is cut off by a fault hook`)
    const conn = libp2p.getConnections().find(c => c.remotePeer.toString() === peerId && c.status === 'open')
    if (conn === undefined) throw new NotAdmittedError(`not connected to ${peerId}`)
    const stream = await conn.newStream(ADMIT_PROTOCOL, { signal: signal ?? AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS), runOnLimitedConnection: true })
    const welcome = await this.dialerExchange(stream, conn, 'member', secrets.clusterKey, secrets.clusterId, signal)
    if (welcome.joinSecret !== undefined && welcome.secretVersion > (this.secrets?.secretVersion ?? 0)) {
      this.secrets = { ...secrets, joinSecret: welcome.joinSecret, secretVersion: welcome.secretVersion }
      this.opts.onSecrets(this.secrets)
    }
    this.markAdmitted(peerId)
  }

  /**
   * Joins a cluster through one member: proves the join secret, checks the
   * cluster key fingerprint. A connection that breaks before the member
   * answers (a reset, an early end, a failed dial) is tried again, up to
   * JOIN_ATTEMPTS in all within the signal's time; a refusal or an impostor
   * is the member's answer and is thrown at once.
   */
  async join (addr: Multiaddr, token: JoinToken, signal?: AbortSignal): Promise<JoinResult> {
    const sig = signal ?? AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS * 2)
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.joinOnce(addr, token, sig)
      } catch (err) {
        const answered = err instanceof AdmissionRejectedError || err instanceof ImpostorError
        if (answered || sig.aborted || attempt >= JOIN_ATTEMPTS) throw err
        this.opts.log(`admission: join through ${addr.toString()} broke before an answer (${(err as Error).message}); trying again`)
        // Cut short when the signal aborts; the next try then fails with its reason.
        await delay(JOIN_RETRY_MS * attempt, undefined, { signal: sig }).catch(() => {})
      }
    }
  }

  private async joinOnce (addr: Multiaddr, token: JoinToken, sig: AbortSignal): Promise<JoinResult> {
    const libp2p = this.requireLibp2p()
    const conn = await libp2p.dial(addr, { signal: sig })
    const stream = await conn.newStream(ADMIT_PROTOCOL, { signal: sig, runOnLimitedConnection: true })
    const welcome = await this.dialerExchange(stream, conn, 'join', token.secret, token.clusterId, sig)
    if (welcome.clusterKey === undefined || clusterKeyFingerprint(Buffer.from(welcome.clusterKey, 'hex')) !== token.fingerprint) {
      await conn.close().catch(() => {})
      throw new ImpostorError('the peer proved the join secret but not the cluster key the token pins')
    }
    this.secrets = {
      clusterId: token.clusterId,
      clusterKey: welcome.clusterKey,
      joinSecret: welcome.joinSecret ?? token.secret,
      secretVersion: welcome.secretVersion
    }
    this.opts.onSecrets(this.secrets)
    const peer = conn.remotePeer.toString()
    this.revoked.delete(libp2p.peerId.toString())
    this.markAdmitted(peer)
    return { peerId: peer, members: welcome.members }
  }

  private async dialerExchange (stream: Stream, conn: Connection, mode: 'join' | 'member', key: string, clusterId: string, signal?: AbortSignal): Promise<Extract<AdmitMessage, { t: 'welcome' }>> {
    const libp2p = this.requireLibp2p()
    const lp = lpStream(stream, { maxDataLength: MAX_ADMIT_FRAME })
    const self = libp2p.peerId.toString()
    const other = conn.remotePeer.toString()
    const nonce = randomBytes(32).toString('hex')
    const opts = { signal }
    try {
      await lp.write(encodeAdmit({ t: 'hello', mode, clusterId, nonce, secretVersion: this.secrets?.secretVersion ?? 0 }), opts)
      const reply = decodeAdmit((await lp.read(opts)).subarray())
      if (reply.t === 'reject') throw rejection(reply.reason)
      if (reply.t !== 'challenge') throw new AdmissionRejectedError('protocol', `unexpected ${reply.t} from ${other}`)
      const expected = admissionMac(key, 'listener', clusterId, other, self, nonce, reply.nonce)
      if (!equalHex(expected, reply.proof)) {
        throw mode === 'join'
          ? new AdmissionRejectedError('token', 'rejected the token')
          : new NotAdmittedError(`${other} could not prove the cluster key`)
      }
      const proof = admissionMac(key, 'dialer', clusterId, self, other, nonce, reply.nonce)
      const mine = this.secrets
      const handOver = mode === 'member' && mine !== undefined && mine.secretVersion > reply.secretVersion ? mine.joinSecret : undefined
      await lp.write(encodeAdmit({ t: 'proof', proof, secretVersion: mine?.secretVersion ?? 0, ...(handOver !== undefined ? { joinSecret: handOver } : {}) }), opts)
      const last = decodeAdmit((await lp.read(opts)).subarray())
      if (last.t === 'reject') throw rejection(last.reason)
      if (last.t !== 'welcome') throw new AdmissionRejectedError('protocol', `unexpected ${last.t} from ${other}`)
      await stream.close().catch(() => {})
      return last
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }

  private async handleInbound (stream: Stream, conn: Connection): Promise<void> {
    const peer = conn.remotePeer.toString()
    const lp = lpStream(stream, { maxDataLength: MAX_ADMIT_FRAME })
    const signal = AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS)
    const reject = async (reason: Extract<AdmitMessage, { t: 'reject' }>['reason']): Promise<void> => {
      await lp.write(encodeAdmit({ t: 'reject', reason }), { signal }).catch(() => {})
      await stream.close().catch(() => {})
    }
    try {
      if (!this.allowAttempt(peer)) { await reject('rate'); return }
      const secrets = this.secrets
      const hello = decodeAdmit((await lp.read({ signal })).subarray())
      if (hello.t !== 'hello') { await reject('protocol'); return }
      if (secrets === undefined || hello.clusterId !== secrets.clusterId) { await reject('cluster'); return }
      if (hello.mode === 'member' && this.revoked.has(peer)) { await reject('revoked'); return }
      const key = hello.mode === 'join' ? secrets.joinSecret : secrets.clusterKey
      const self = this.requireLibp2p().peerId.toString()
      const nonce = randomBytes(32).toString('hex')
      const proof = admissionMac(key, 'listener', secrets.clusterId, self, peer, hello.nonce, nonce)
      await lp.write(encodeAdmit({ t: 'challenge', nonce, proof, secretVersion: secrets.secretVersion }), { signal })
      const answer = decodeAdmit((await lp.read({ signal })).subarray())
      if (answer.t !== 'proof') { await reject('protocol'); return }
      const expected = admissionMac(key, 'dialer', secrets.clusterId, peer, self, hello.nonce, nonce)
      if (!equalHex(expected, answer.proof)) {
        this.banned.set(peer, Date.now() + this.opts.banMs)
        this.opts.log(`admission: ${peer} failed to prove the ${hello.mode === 'join' ? 'join token' : 'cluster key'}`)
        await reject('token')
        setTimeout(() => { void conn.close().catch(() => {}) }, 200).unref()
        return
      }
      if (hello.mode === 'member' && answer.joinSecret !== undefined && answer.secretVersion > secrets.secretVersion) {
        this.secrets = { ...secrets, joinSecret: answer.joinSecret, secretVersion: answer.secretVersion }
        this.opts.onSecrets(this.secrets)
      }
      if (hello.mode === 'join') this.revoked.delete(peer)
      const now = this.secrets ?? secrets
      const welcome: AdmitMessage = hello.mode === 'join'
        ? { t: 'welcome', clusterKey: now.clusterKey, joinSecret: now.joinSecret, secretVersion: now.secretVersion, members: this.opts.members().slice(0, 256) }
        : { t: 'welcome', secretVersion: now.secretVersion, members: [], ...(hello.secretVersion < now.secretVersion ? { joinSecret: now.joinSecret } : {}) }
      await lp.write(encodeAdmit(welcome), { signal })
      this.markAdmitted(peer)
      await stream.close().catch(() => {})
    } catch (err) {
      this.opts.log(`admission: exchange with ${peer} failed: ${(err as Error).message}`)
      stream.abort(err as Error)
    }
  }

  private markAdmitted (peer: string): void {
    this.admitted.add(peer)
    const t = this.graceTimers.get(peer)
    if (t !== undefined) { clearTimeout(t); this.graceTimers.delete(peer) }
  }

  private allowAttempt (peer: string): boolean {
    if (this.isBanned(peer)) return false
    const now = Date.now()
    const a = this.attempts.get(peer)
    if (a === undefined || now - a.windowStart > this.opts.windowMs) {
      this.attempts.set(peer, { windowStart: now, count: 1 })
      if (this.attempts.size > 10_000) this.attempts.clear() // bound the table; worst case is a fresh window
      return true
    }
    a.count++
    return a.count <= this.opts.attemptsPerWindow
  }

  /** An unadmitted inbound connection gets `graceMs` to run admission, then it is closed. */
  private armGrace (conn: Connection): void {
    const peer = conn.remotePeer.toString()
    if (conn.direction !== 'inbound' || this.isAdmitted(peer) || this.graceTimers.has(peer)) return
    const timer = setTimeout(() => {
      this.graceTimers.delete(peer)
      if (this.isAdmitted(peer)) return
      for (const c of this.libp2p?.getConnections(conn.remotePeer) ?? []) void c.close().catch(() => {})
    }, this.opts.graceMs)
    timer.unref()
    this.graceTimers.set(peer, timer)
  }

  private requireLibp2p (): Libp2p {
    if (this.libp2p === undefined) throw new Error('admission not started')
    return this.libp2p
  }
}

function rejection (reason: string): Error {
  switch (reason) {
    case 'token': return new AdmissionRejectedError(reason, 'rejected the token')
    case 'cluster': return new AdmissionRejectedError(reason, 'belongs to another cluster (the token names a different cluster id)')
    case 'revoked': return new AdmissionRejectedError(reason, 'has removed this node from the cluster (join again with a token)')
    case 'rate': return new AdmissionRejectedError(reason, 'is refusing admission attempts for now (too many tries; wait and retry)')
    default: return new AdmissionRejectedError(reason, 'broke off the admission exchange')
  }
}
