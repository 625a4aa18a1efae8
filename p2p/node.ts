// Builds the agent's libp2p node: persistent peer key, QUIC + TCP (choice in
// quic/, WebSockets optional), identify, ping and a cluster-private kad-dht,
// plus reachability (circuit relay, AutoNAT, DCUtR; see reachability/), with
// admission in front of every cluster protocol and a gater that refuses
// banned peers.
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper, type KadDHT } from '@libp2p/kad-dht'
import { ping, type Ping } from '@libp2p/ping'
import { createLibp2p, type Libp2p } from 'libp2p'
import type { PrivateKey, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import { transportModules } from '../quic/transports.js'
import type { Admission } from './admission/admission.js'
import { AUTONAT_PROTOCOL, RELAY_HOP_PROTOCOL, reachabilityModules, type ReachabilityOptions } from './reachability/index.js'

export const KAD_PROTOCOL = '/bolt/kad/1.0.0'
export const PING_PROTOCOL = '/ipfs/ping/1.0.0'
const PEER_KEY_FILE = 'peer.key'

export type BoltLibp2p = Libp2p<{ dht: KadDHT, ping: Ping, identify: unknown }>

export interface BoltNodeInit {
  dataDir: string
  listen: string[]
  announce?: string[]
  /** Servers answer DHT queries; edge/client nodes may only ask. */
  dhtServer: boolean
  admission: Admission
  /** Relay service/client, AutoNAT, DCUtR; absent: none of them (plain direct node, as in unit tests). */
  reach?: ReachabilityOptions
  /** WebSockets listen addresses (browser clients); empty or absent: no WebSockets transport. */
  websockets?: string[]
  /** Open connections kept at most (libp2p prunes beyond); default DEFAULT_MAX_CONNECTIONS. */
  maxConnections?: number
}

export const DEFAULT_MAX_CONNECTIONS = 512
/** A connection whose ping gets no answer this long is dead and closed (libp2p's connection monitor). */
export const CONNECTION_PING_TIMEOUT_MS = 30_000
const PING_STREAMS = 4
/** For edge agents: small machines keep fewer connections (SWIM redials a pruned member when it probes it). */
export const EDGE_MAX_CONNECTIONS = 64

/** Protocols of the reachability services that admission guards (see guardServiceProtocols). */
export const REACHABILITY_GUARDED_PROTOCOLS = [RELAY_HOP_PROTOCOL, AUTONAT_PROTOCOL]

/** Loads the peer key from the data dir, creating it on first start, so the peer id survives restarts. */
export async function loadPeerKey (dataDir: string): Promise<PrivateKey> {
  const file = join(dataDir, PEER_KEY_FILE)
  try {
    return privateKeyFromProtobuf(await readFile(file))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read the peer key ${file}: ${(err as Error).message}`)
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const key = await generateKeyPair('Ed25519')
  await writeFile(file, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
  await chmod(file, 0o600)
  return key
}

export async function createBoltNode (init: BoltNodeInit): Promise<BoltLibp2p> {
  const privateKey = await loadPeerKey(init.dataDir)
  const { admission } = init
  const ws = init.websockets ?? []
  const base = transportModules({ websockets: ws.length > 0 })
  const reach = init.reach !== undefined ? reachabilityModules(init.reach) : { transports: [], services: {} }
  const node = await createLibp2p({
    privateKey,
    addresses: { listen: [...init.listen, ...ws], ...(init.announce !== undefined && init.announce.length > 0 ? { announce: init.announce } : {}) },
    ...base,
    transports: [...base.transports, ...reach.transports],
    connectionGater: {
      // Loopback and private addresses are normal in a cluster: don't let the
      // default gater refuse them.
      denyDialMultiaddr: () => false,
      denyInboundEncryptedConnection: (peerId) => admission.isBanned(peerId.toString()),
      denyOutboundEncryptedConnection: (peerId) => admission.isBanned(peerId.toString())
    },
    // All agents on one host (tests, scenarios) dial from one IP: lift the per-host inbound rate limit.
    connectionManager: { maxConnections: init.maxConnections ?? DEFAULT_MAX_CONNECTIONS, inboundConnectionThreshold: 1000, maxIncomingPendingConnections: 128 },
    // libp2p pings every connection every 10 s and aborts one whose ping
    // fails: takes longer than about 1.2 × its average (at least 5 s by
    // default), or cannot open a stream because the previous ping is still
    // out (the ping service allows 1 outbound and 2 inbound streams). A ping
    // queued behind megabytes of pieces on a busy connection did both, and
    // the abort broke every transfer on it. Members' liveness is SWIM's job;
    // this only has to catch a connection that is dead.
    connectionMonitor: { pingTimeout: { minTimeout: CONNECTION_PING_TIMEOUT_MS } },
    services: {
      identify: identify(),
      // Room for the pings a slow connection has out at once (monitor timeout / interval, both sides).
      ping: ping({ maxOutboundStreams: PING_STREAMS, maxInboundStreams: 2 * PING_STREAMS }),
      dht: kadDHT({ protocol: KAD_PROTOCOL, clientMode: !init.dhtServer, peerInfoMapper: passthroughMapper, allowQueryWithZeroPeers: true }),
      ...reach.services
    },
    start: false
  })
  return node as unknown as BoltLibp2p
}

interface RegistrarInternals {
  getHandler: (protocol: string) => { handler: StreamHandler & { __boltGuarded?: true }, options: StreamHandlerOptions }
  getProtocols: () => string[]
}

/**
 * Puts admission in front of handlers that libp2p services registered
 * themselves (the DHT, ping). libp2p's own `use()` middleware is not used:
 * in libp2p 3.3 it appends the handler to the stored middleware list on every
 * inbound stream, so handlers would run once more per stream.
 */
export async function guardServiceProtocols (node: BoltLibp2p, admission: Admission, protocols: string[]): Promise<void> {
  const registrar = (node as unknown as { components: { registrar: RegistrarInternals } }).components.registrar
  for (const protocol of protocols) {
    if (!registrar.getProtocols().includes(protocol)) continue
    const { handler, options } = registrar.getHandler(protocol)
    if (handler.__boltGuarded === true) continue
    const guarded = admission.guard(handler) as StreamHandler & { __boltGuarded?: true }
    guarded.__boltGuarded = true
    await node.handle(protocol, guarded, { ...options, force: true })
  }
}
