// A rogue cluster member for attack tests: a libp2p node that joins a real
// cluster with its token (so every member admits it), then sends what an
// honest agent never would over the cluster's own protocols — forwarded
// Raft commands on /bolt/api/1 and Raft messages on /bolt/raft/1.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { lpStream } from '@libp2p/utils'
import { Admission } from '../../p2p/admission/admission.js'
import { createBoltNode, type BoltLibp2p } from '../../p2p/node.js'
import { parseToken } from '../../p2p/token.js'
import { EPHEMERAL_LISTEN } from '../../quic/transports.js'
import { encodeMessage, MAX_RAFT_FRAME_BYTES, type Message } from '../../consensus/index.js'
import { API_FORWARD_PROTOCOL, forwardRequest, type ForwardResponse } from '../../agent/raft/forward.js'
import { RAFT_PROTOCOL } from '../../agent/raft/transport.js'

export class RogueMember {
  private constructor (readonly node: BoltLibp2p, readonly admission: Admission, private readonly dir: string) {}

  get id (): string { return this.node.peerId.toString() }

  /** Joins through `seedAddr` (a member's multiaddr with /p2p/) with the cluster's join token. */
  static async join (seedAddr: string, token: string): Promise<RogueMember> {
    const dir = await mkdtemp(join(tmpdir(), 'bolt-rogue-'))
    const admission = new Admission()
    const node = await createBoltNode({ dataDir: dir, listen: EPHEMERAL_LISTEN, dhtServer: false, admission })
    await node.start()
    await admission.start(node)
    const rogue = new RogueMember(node, admission, dir)
    try {
      await admission.join(multiaddr(seedAddr), parseToken(token), AbortSignal.timeout(20_000))
    } catch (err) {
      await rogue.stop()
      throw err
    }
    return rogue
  }

  /** Dials the member at `addr` and proves the cluster key to it, as an honest member does before using a protocol. */
  private async connect (addr: string, signal: AbortSignal): Promise<void> {
    const ma = multiaddr(addr)
    const conn = await this.node.dial(ma, { signal })
    await this.admission.ensureAdmitted(conn.remotePeer.toString(), signal)
  }

  /** Forwards `data` to the member at `addr` as if it were a command to propose. */
  async forward (addr: string, data: Uint8Array, req = 'rogue-req'): Promise<ForwardResponse> {
    const signal = AbortSignal.timeout(20_000)
    await this.connect(addr, signal)
    const stream = await this.node.dialProtocol(multiaddr(addr), API_FORWARD_PROTOCOL, { signal })
    // As a Buffer: cbor-x tags a plain Uint8Array (tag 64), which the frame guard refuses before any Raft check.
    return await forwardRequest(stream, { op: 'propose', data: Buffer.from(data.buffer, data.byteOffset, data.byteLength), req }, signal)
  }

  /** Sends Raft messages to the member at `addr` on one /bolt/raft/1 stream. */
  async raftSend (addr: string, msgs: Message[]): Promise<void> {
    const signal = AbortSignal.timeout(20_000)
    await this.connect(addr, signal)
    const stream = await this.node.dialProtocol(multiaddr(addr), RAFT_PROTOCOL, { signal })
    const lp = lpStream(stream, { maxDataLength: MAX_RAFT_FRAME_BYTES })
    for (const m of msgs) await lp.write(encodeMessage(m), { signal })
    await stream.close({ signal }).catch(() => { stream.abort(new Error('rogue done')) })
  }

  async stop (): Promise<void> {
    await this.admission.stop()
    await this.node.stop()
    await rm(this.dir, { recursive: true, force: true })
  }
}
