// This node on the network: the libp2p node with admission on every
// transport, and what keeps it reachable once admitted — a relay slot when
// behind NAT, mDNS answers, and the addresses other members dial.
import { peerIdFromString } from '@libp2p/peer-id'
import type { Admission } from '../p2p/admission/admission.js'
import { createBoltNode, guardServiceProtocols, KAD_PROTOCOL, PING_PROTOCOL, REACHABILITY_GUARDED_PROTOCOLS, type BoltLibp2p, DEFAULT_MAX_CONNECTIONS, EDGE_MAX_CONNECTIONS } from '../p2p/node.js'
import { dialableAddrs, isRelayed, ownAddrs, RelaySlot, shouldReserve } from '../p2p/reachability/index.js'
import type { LanAdvertiser } from '../p2p/discovery/lan.js'
import { dhtServerMode, reachabilityOptions, type Config } from './config.js'
import { UserError } from './errors.js'
import type { Logger } from './logger.js'

export interface NetworkHostInit {
  dataDir: string
  config: Config
  admission: Admission
  role: 'server' | 'client'
  log: Logger
}

export class NetworkHost {
  private node: BoltLibp2p | undefined
  private relaySlot: RelaySlot | undefined
  private lan: LanAdvertiser | undefined
  private lastAdvertised = ''
  private onAddrs: (() => void) | undefined
  private readonly onSelfUpdate = (): void => {
    const addrs = this.advertisedAddrs().join(' ')
    if (addrs === this.lastAdvertised) return
    this.lastAdvertised = addrs
    this.onAddrs?.()
  }

  constructor (private readonly o: NetworkHostInit) {}

  get libp2p (): BoltLibp2p {
    if (this.node === undefined) throw new Error('the libp2p node is used before it started')
    return this.node
  }

  get peerId (): string { return this.libp2p.peerId.toString() }

  async start (): Promise<void> {
    const { config, admission, role } = this.o
    this.node = await createBoltNode({
      dataDir: this.o.dataDir,
      listen: config.listen,
      announce: config.announce,
      dhtServer: dhtServerMode(config, role),
      admission,
      reach: reachabilityOptions(config, role),
      websockets: config.websockets.listen,
      maxConnections: config.profile === 'edge' ? EDGE_MAX_CONNECTIONS : DEFAULT_MAX_CONNECTIONS
    })
    try {
      await this.node.start()
    } catch (err) {
      throw new UserError(`cannot listen on ${config.listen.join(', ')}: ${(err as Error).message} (pick other --listen addresses)`)
    }
    await admission.start(this.node)
    await guardServiceProtocols(this.node, admission, [KAD_PROTOCOL, PING_PROTOCOL, ...REACHABILITY_GUARDED_PROTOCOLS])
  }

  /**
   * Once admitted: hold a relay slot if behind NAT, answer mDNS searches, and
   * call `onAddrsChanged` whenever the addresses others can dial change.
   */
  async startReachability (clusterId: string, onAddrsChanged: () => void): Promise<void> {
    const { config, log } = this.o
    this.onAddrs = onAddrsChanged
    this.libp2p.addEventListener('self:peer:update', this.onSelfUpdate)
    if (shouldReserve(config.relay.reserve, config.announce)) {
      this.relaySlot = new RelaySlot(this.libp2p, { log: (m) => log.info(m) })
      await this.relaySlot.start().catch((err: Error) => { log.warn({ err: err.message }, 'cannot search for a relay') })
    }
    if (config.mdns) {
      // mDNS is loaded only where it is on.
      const { LanAdvertiser } = await import('../p2p/discovery/lan.js')
      this.lan = new LanAdvertiser(this.libp2p)
      await this.lan.start(clusterId).catch((err: Error) => { log.warn({ err: err.message }, 'mDNS unavailable; joiners need an address') })
    }
  }

  /** Addresses other members can dial, without the /p2p part. */
  advertisedAddrs (): string[] {
    return dialableAddrs(ownAddrs(this.libp2p), this.peerId)
  }

  /** Addresses to give a joiner, with the /p2p part. */
  joinAddrs (): string[] {
    return ownAddrs(this.libp2p).map(m => m.toString())
  }

  /** How this node reaches a peer now: a direct or a relayed connection, or none open. */
  connectionKind (peerId: string): 'direct' | 'relayed' | 'none' {
    const open = this.connectionsTo(peerId).filter(c => c.status === 'open')
    if (open.some(c => !isRelayed(c.remoteAddr))) return 'direct'
    return open.length > 0 ? 'relayed' : 'none'
  }

  private connectionsTo (peerId: string): ReturnType<BoltLibp2p['getConnections']> {
    try {
      return this.libp2p.getConnections(peerIdFromString(peerId))
    } catch {
      return [] // an id libp2p cannot parse has no connection
    }
  }

  /** Stops reachability first (it uses the node), then the node. */
  async stopReachability (): Promise<void> {
    this.node?.removeEventListener('self:peer:update', this.onSelfUpdate)
    this.onAddrs = undefined
    this.relaySlot?.stop()
    await this.lan?.stop().catch((err: Error) => { this.o.log.debug({ err: err.message }, 'mDNS stop') })
  }

  async stop (): Promise<void> {
    await this.stopReachability()
    await this.node?.stop()
  }
}
