// Cluster admission. Every peer must prove, on each connection, that it holds
// the cluster's secret before any cluster protocol (SWIM, Raft, pieces, API,
// the private DHT, ping) answers it. Joiners prove the join secret from the
// token and receive the cluster key; members prove the cluster key to each
// other. The check sits on the stream handlers, so it holds on QUIC, TCP and
// relayed connections alike — unlike libp2p's pnet, which QUIC ignores.
// `evict` removes a member for good: its peer id is refused, and the cluster
// key and join secret are replaced, the new key handed only to members that
// prove the old one and are not evicted.
import { setTimeout as delay } from 'node:timers/promises'
import { randomBytes } from 'node:crypto'
import { lpStream } from '@libp2p/utils'
import type { Connection, Libp2p, PeerId, Stream, StreamHandler } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { clusterKeyFingerprint, equalHex, type JoinToken } from '../token.js'
import { ADMIT_PROTOCOL, admissionMac, decodeAdmit, encodeAdmit, MAX_ADMIT_FRAME, MAX_EVICTED_HANDOVER, type AdmitMessage, type Rekey } from './messages.js'
import { sourceOf } from './failure-table.js'
import { AdmissionRejectedError, ImpostorError, NotAdmittedError, rejection } from './errors.js'
import { addEvictedIds, keyOf, keyVersionOf, MAX_EVICTED, rekeyFor, type ClusterSecrets } from './secrets.js'
import { AdmissionThrottle } from './throttle.js'
import { resolveOptions, type AdmissionInit, type AdmissionOptions } from './options.js'


const HANDSHAKE_TIMEOUT_MS = 5_000
/** Tries of `join` through one member when the connection breaks before it answers, and the pause before the next (times the try). */
export const JOIN_ATTEMPTS = 3
const JOIN_RETRY_MS = 300


export interface JoinResult {
  peerId: string
  members: Array<{ id: string, addrs: string[] }>
}

export class Admission {
  private secrets: ClusterSecrets | undefined
  private readonly admitted = new Set<string>()
  /** Evicted peer ids, oldest first (a Set keeps insertion order). */
  private readonly evicted: Set<string>
  private readonly throttle: AdmissionThrottle
  /** Fault injection (scenarios, tests): peers cut off as if the network dropped everything. */
  private readonly blocked = new Set<string>()
  private readonly graceTimers = new Map<string, NodeJS.Timeout>()
  private readonly inflight = new Map<string, Promise<void>>()
  private readonly opts: AdmissionOptions
  private libp2p: Libp2p | undefined
  private readonly onConnOpen = (evt: CustomEvent<Connection>): void => { this.armGrace(evt.detail) }
  private readonly onPeerDisconnect = (evt: CustomEvent<PeerId>): void => {
    // A restarted peer loses its view of us; ask for proof again next time.
    this.admitted.delete(evt.detail.toString())
  }

  constructor (init: AdmissionInit = {}) {
    this.secrets = init.secrets
    this.evicted = new Set([...(init.evicted ?? [])].slice(-MAX_EVICTED))
    this.opts = resolveOptions(init)
    this.throttle = new AdmissionThrottle(this.opts)
  }

  /** For libp2p's connection gater: refuse peers banned after a failed proof. */
  isBanned (peerId: string): boolean {
    return this.blocked.has(peerId) || this.throttle.isBanned(peerId)
  }

  /** Installs the secrets of a cluster this node just created. */
  setSecrets (s: ClusterSecrets): void { this.secrets = s }

  isAdmitted (peerId: string): boolean { return this.admitted.has(peerId) && !this.evicted.has(peerId) && !this.blocked.has(peerId) }

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

  isEvicted (peerId: string): boolean { return this.evicted.has(peerId) }
  evictedPeers (): string[] { return [...this.evicted] }

  /**
   * Removes a member for good: its peer id is refused from now on, and the
   * cluster key and the join secret are replaced, so it can neither come back
   * under another peer id nor join again with a token it knew. Connected
   * members are handed the new key at once (they prove the old one); others
   * on their next handshake.
   */
  evict (peerId: string, fresh: { clusterKey: string, joinSecret: string }): ClusterSecrets {
    const s = this.secrets
    if (s === undefined) throw new Error('this node has not joined a cluster')
    if (peerId === this.libp2p?.peerId.toString()) throw new Error('a node cannot evict itself (use leave)')
    this.addEvicted([peerId])
    this.secrets = {
      ...s,
      clusterKey: fresh.clusterKey,
      keyVersion: keyVersionOf(s) + 1,
      previousKey: s.clusterKey,
      joinSecret: fresh.joinSecret,
      secretVersion: s.secretVersion + 1
    }
    this.opts.onSecrets(this.secrets)
    this.opts.log(`admission: evicted ${peerId}; cluster key now version ${keyVersionOf(this.secrets)}`)
    this.handshakeAgain()
    return this.secrets
  }

  /** Issues a new join secret; admitted members are undisturbed and learn it on their next handshake. */
  rotate (newSecret: string): ClusterSecrets {
    if (this.secrets === undefined) throw new Error('this node has not joined a cluster')
    this.secrets = { ...this.secrets, joinSecret: newSecret, secretVersion: this.secrets.secretVersion + 1 }
    this.opts.onSecrets(this.secrets)
    this.handshakeAgain()
    return this.secrets
  }

  /** Pushes new secrets to connected members by running the handshake again with each. */
  private handshakeAgain (): void {
    for (const id of [...this.admitted]) {
      this.admitted.delete(id)
      void this.ensureAdmitted(id).catch((err: Error) => { this.opts.log(`admission: new handshake with ${id} failed: ${err.message}`) })
    }
  }

  /** Adds evicted ids (see addEvictedIds) and cuts their connections. */
  private addEvicted (ids: string[]): void {
    const self = this.libp2p?.peerId.toString()
    const added = ids.filter(id => id !== self)
    const changed = addEvictedIds(this.evicted, added)
    for (const id of added) {
      this.admitted.delete(id)
      for (const c of this.libp2p?.getConnections() ?? []) {
        if (c.remotePeer.toString() === id) void c.close().catch((err: Error) => { c.abort(err) })
      }
    }
    if (changed) this.opts.onEvicted([...this.evicted])
  }

  /** A member one key version behind proved the old key: take the new one it was handed. */
  private adoptKey (r: Rekey, from: string): void {
    const s = this.secrets
    if (s === undefined || r.version !== keyVersionOf(s) + 1) return
    this.secrets = { ...s, clusterKey: r.key, keyVersion: r.version, previousKey: s.clusterKey }
    this.opts.log(`admission: ${from} handed over cluster key version ${r.version}`)
    this.addEvicted(r.evicted)
    this.opts.onSecrets(this.secrets)
    this.handshakeAgain()
  }

  /** Whether `peer` may prove the previous key (and be handed the new one): a known member, not evicted. */
  private mayUseOldKey (peer: string): boolean {
    return !this.evicted.has(peer) && this.opts.knownMember(peer)
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
      if (this.secrets === undefined || this.evicted.has(peer) || this.blocked.has(peer)) { stream.abort(new NotAdmittedError('not admitted')); return }
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
    if (this.evicted.has(peerId)) throw new NotAdmittedError(`${peerId} was evicted from the cluster`)
    if (this.blocked.has(peerId)) throw new NotAdmittedError(`${peerId} is cut off by a fault hook`)
    const conn = libp2p.getConnections().find(c => c.remotePeer.toString() === peerId && c.status === 'open')
    if (conn === undefined) throw new NotAdmittedError(`not connected to ${peerId}`)
    const sig = signal ?? AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS)
    let welcome: Extract<AdmitMessage, { t: 'welcome' }>
    try {
      const stream = await conn.newStream(ADMIT_PROTOCOL, { signal: sig, runOnLimitedConnection: true })
      welcome = await this.dialerExchange(stream, conn, 'member', secrets.clusterId, sig)
    } catch (err) {
      // This peer id was evicted once and has since joined again with a
      // token (through another member): prove the join secret to this one too.
      if (!(err instanceof AdmissionRejectedError && err.reason === 'revoked')) throw err
      const stream = await conn.newStream(ADMIT_PROTOCOL, { signal: sig, runOnLimitedConnection: true })
      welcome = await this.dialerExchange(stream, conn, 'join', secrets.clusterId, sig)
      if (welcome.clusterKey !== this.secrets?.clusterKey) throw new ImpostorError(`${peerId} proved the join secret but holds another cluster key`)
    }
    if (welcome.joinSecret !== undefined && welcome.secretVersion > (this.secrets?.secretVersion ?? 0)) {
      this.secrets = { ...(this.secrets ?? secrets), joinSecret: welcome.joinSecret, secretVersion: welcome.secretVersion }
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
    const welcome = await this.dialerExchange(stream, conn, 'join', token.clusterId, sig, token.secret)
    if (welcome.clusterKey === undefined || clusterKeyFingerprint(Buffer.from(welcome.clusterKey, 'hex')) !== token.fingerprint) {
      await conn.close().catch((err: Error) => { conn.abort(err) }) // an impostor's connection must not stay open
      throw new ImpostorError('the peer proved the join secret but not the cluster key the token pins')
    }
    this.secrets = {
      clusterId: token.clusterId,
      clusterKey: welcome.clusterKey,
      keyVersion: welcome.keyVersion,
      joinSecret: welcome.joinSecret ?? token.secret,
      secretVersion: welcome.secretVersion
    }
    this.opts.onSecrets(this.secrets)
    const peer = conn.remotePeer.toString()
    this.markAdmitted(peer)
    return { peerId: peer, members: welcome.members }
  }

  /**
   * The dialer's side. `join`: proves `joinKey` (the token's secret, or our
   * join secret). `member`: proves the cluster key of the older side's
   * version, and hands ours over when it is the newer.
   */
  private async dialerExchange (stream: Stream, conn: Connection, mode: 'join' | 'member', clusterId: string, signal: AbortSignal | undefined, joinKey?: string): Promise<Extract<AdmitMessage, { t: 'welcome' }>> {
    const libp2p = this.requireLibp2p()
    const lp = lpStream(stream, { maxDataLength: MAX_ADMIT_FRAME })
    const self = libp2p.peerId.toString()
    const other = conn.remotePeer.toString()
    const nonce = randomBytes(32).toString('hex')
    const opts = { signal }
    const mine = this.secrets
    const myKeyVersion = mine !== undefined ? keyVersionOf(mine) : 1
    try {
      await lp.write(encodeAdmit({ t: 'hello', mode, clusterId, nonce, secretVersion: mine?.secretVersion ?? 0, keyVersion: myKeyVersion }), opts)
      const reply = decodeAdmit((await lp.read(opts)).subarray())
      if (reply.t === 'reject') throw rejection(reply.reason)
      if (reply.t !== 'challenge') throw new AdmissionRejectedError('protocol', `unexpected ${reply.t} from ${other}`)
      let key: string | undefined = joinKey ?? mine?.joinSecret
      if (mode === 'member') {
        key = reply.keyVersion <= myKeyVersion ? keyOf(this.secrets, reply.keyVersion) : undefined
        if (key === undefined || (reply.keyVersion < myKeyVersion && !this.mayUseOldKey(other))) {
          throw new NotAdmittedError(`${other} holds cluster key version ${reply.keyVersion}, this node ${myKeyVersion}: one of the two must join again with a token`)
        }
      }
      if (key === undefined) throw new NotAdmittedError('no join secret to prove')
      const expected = admissionMac(key, 'listener', clusterId, other, self, nonce, reply.nonce)
      if (!equalHex(expected, reply.proof)) {
        throw mode === 'join'
          ? new AdmissionRejectedError('token', 'rejected the token')
          : new NotAdmittedError(`${other} could not prove the cluster key`)
      }
      const proof = admissionMac(key, 'dialer', clusterId, self, other, nonce, reply.nonce)
      const handOver = mode === 'member' && mine !== undefined && mine.secretVersion > reply.secretVersion ? mine.joinSecret : undefined
      const rekey = mode === 'member' && reply.keyVersion < myKeyVersion ? rekeyFor(this.secrets, this.evicted, MAX_EVICTED_HANDOVER) : undefined
      await lp.write(encodeAdmit({ t: 'proof', proof, secretVersion: mine?.secretVersion ?? 0, ...(handOver !== undefined ? { joinSecret: handOver } : {}), ...(rekey !== undefined ? { rekey } : {}) }), opts)
      const last = decodeAdmit((await lp.read(opts)).subarray())
      if (last.t === 'reject') throw rejection(last.reason)
      if (last.t !== 'welcome') throw new AdmissionRejectedError('protocol', `unexpected ${last.t} from ${other}`)
      if (mode === 'member' && last.rekey !== undefined && reply.keyVersion === myKeyVersion) this.adoptKey(last.rekey, other)
      await stream.close().catch((err: Error) => { stream.abort(err) }) // the answer is in; a peer that reset first changes nothing
      return last
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }

  private async handleInbound (stream: Stream, conn: Connection): Promise<void> {
    const peer = conn.remotePeer.toString()
    const source = sourceOf(conn.remoteAddr, peer)
    const lp = lpStream(stream, { maxDataLength: MAX_ADMIT_FRAME })
    const signal = AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS)
    const reject = async (reason: Extract<AdmitMessage, { t: 'reject' }>['reason']): Promise<void> => {
      // Best effort: a peer that already went away needs no reason, and the refusal stands either way.
      await lp.write(encodeAdmit({ t: 'reject', reason }), { signal }).catch(() => {})
      await stream.close().catch((err: Error) => { stream.abort(err) })
    }
    try {
      if (!this.throttle.allow(peer, source)) { await reject('rate'); return }
      const secrets = this.secrets
      const hello = decodeAdmit((await lp.read({ signal })).subarray())
      if (hello.t !== 'hello') { await reject('protocol'); return }
      if (secrets === undefined || hello.clusterId !== secrets.clusterId) { await reject('cluster'); return }
      if (hello.mode === 'member' && this.evicted.has(peer)) { await reject('revoked'); return }
      const mine = keyVersionOf(secrets)
      // Member proofs use the older side's key: one version back only, and
      // only from a member this node knows (an evicted machine under a new
      // peer id is not one).
      const used = Math.min(hello.keyVersion, mine)
      const key = hello.mode === 'join' ? secrets.joinSecret : keyOf(this.secrets, used)
      if (key === undefined || (hello.mode === 'member' && used < mine && !this.mayUseOldKey(peer))) { await reject('stale'); return }
      const self = this.requireLibp2p().peerId.toString()
      const nonce = randomBytes(32).toString('hex')
      const proof = admissionMac(key, 'listener', secrets.clusterId, self, peer, hello.nonce, nonce)
      await lp.write(encodeAdmit({ t: 'challenge', nonce, proof, secretVersion: secrets.secretVersion, keyVersion: hello.mode === 'member' ? used : mine }), { signal })
      const answer = decodeAdmit((await lp.read({ signal })).subarray())
      if (answer.t !== 'proof') { await reject('protocol'); return }
      const expected = admissionMac(key, 'dialer', secrets.clusterId, peer, self, hello.nonce, nonce)
      if (!equalHex(expected, answer.proof)) {
        this.throttle.failed(peer, source)
        this.opts.log(`admission: ${peer} (from ${source}) failed to prove the ${hello.mode === 'join' ? 'join token' : 'cluster key'}`)
        await reject('token')
        setTimeout(() => { void conn.close().catch((err: Error) => { conn.abort(err) }) }, 200).unref()
        return
      }
      if (hello.mode === 'member' && answer.rekey !== undefined && used === mine) this.adoptKey(answer.rekey, peer)
      const current = this.secrets ?? secrets
      if (hello.mode === 'member' && answer.joinSecret !== undefined && answer.secretVersion > current.secretVersion) {
        this.secrets = { ...current, joinSecret: answer.joinSecret, secretVersion: answer.secretVersion }
        this.opts.onSecrets(this.secrets)
      }
      if (hello.mode === 'join' && this.evicted.delete(peer)) this.opts.onEvicted([...this.evicted])
      const now = this.secrets ?? secrets
      const rekey = hello.mode === 'member' && used < keyVersionOf(now) ? rekeyFor(this.secrets, this.evicted, MAX_EVICTED_HANDOVER) : undefined
      const welcome: AdmitMessage = hello.mode === 'join'
        ? { t: 'welcome', clusterKey: now.clusterKey, keyVersion: keyVersionOf(now), joinSecret: now.joinSecret, secretVersion: now.secretVersion, members: this.opts.members().slice(0, 256) }
        : { t: 'welcome', secretVersion: now.secretVersion, keyVersion: keyVersionOf(now), members: [], ...(hello.secretVersion < now.secretVersion ? { joinSecret: now.joinSecret } : {}), ...(rekey !== undefined ? { rekey } : {}) }
      await lp.write(encodeAdmit(welcome), { signal })
      this.markAdmitted(peer)
      await stream.close().catch((err: Error) => { stream.abort(err) }) // admitted already; a peer that reset first changes nothing
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

  /** An unadmitted inbound connection gets `graceMs` to run admission, then it is closed. */
  private armGrace (conn: Connection): void {
    const peer = conn.remotePeer.toString()
    if (conn.direction !== 'inbound' || this.isAdmitted(peer) || this.graceTimers.has(peer)) return
    const timer = setTimeout(() => {
      this.graceTimers.delete(peer)
      if (this.isAdmitted(peer)) return
      for (const c of this.libp2p?.getConnections(conn.remotePeer) ?? []) void c.close().catch((err: Error) => { c.abort(err) })
    }, this.opts.graceMs)
    timer.unref()
    this.graceTimers.set(peer, timer)
  }

  private requireLibp2p (): Libp2p {
    if (this.libp2p === undefined) throw new Error('admission not started')
    return this.libp2p
  }
}


