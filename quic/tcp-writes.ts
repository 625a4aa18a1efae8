// One socket write per batch on libp2p's TCP connections. Noise hands its
// connection a list of buffers per send (per message: the 2-byte length,
// the ciphertext in one or more parts, the 16-byte tag), and @libp2p/tcp
// writes each buffer with its own `socket.write`. With Nagle off (libp2p's
// default, right for request/response traffic) each of those writes is a
// syscall and a TCP segment of its own: about 55 writes per MiB moved, a
// third of them 2 or 16 bytes long. Here the socket is corked while the
// list is written, so Node hands the whole list to the kernel in one
// writev. The bytes, their order and the backpressure are the same: the
// list is written whole, as the library's loop does when the socket
// accepts it, and `canSendMore` is what the last write said, so the
// connection waits for 'drain' exactly when the socket's buffer is full.
import { Socket } from 'node:net'
import type { Connection, CreateListenerOptions, DialTransportOptions, Listener, MultiaddrConnection, Transport, Upgrader } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Uint8ArrayList } from 'uint8arraylist'

interface SendResult { sentBytes: number, canSendMore: boolean }
type SendData = (data: Uint8ArrayList) => SendResult

/** Replaces a TCP connection's `sendData` with a corked one; other connections are left as they are. */
export function batchSocketWrites (maConn: MultiaddrConnection): boolean {
  const conn = maConn as MultiaddrConnection & { socket?: unknown, sendData?: SendData }
  const socket = conn.socket
  if (!(socket instanceof Socket) || typeof conn.sendData !== 'function') return false
  conn.sendData = (data: Uint8ArrayList): SendResult => {
    let canSendMore = true
    socket.cork()
    try {
      for (const buf of data) canSendMore = socket.write(buf)
    } finally {
      socket.uncork()
    }
    return { sentBytes: data.byteLength, canSendMore }
  }
  return true
}

function batchingUpgrader (upgrader: Upgrader): Upgrader {
  return new Proxy(upgrader, {
    get (target, prop) {
      if (prop === 'upgradeOutbound') {
        return async (maConn: MultiaddrConnection, opts: Parameters<Upgrader['upgradeOutbound']>[1]): Promise<Connection> => {
          batchSocketWrites(maConn)
          return await target.upgradeOutbound(maConn, opts)
        }
      }
      if (prop === 'upgradeInbound') {
        return async (maConn: MultiaddrConnection, opts: Parameters<Upgrader['upgradeInbound']>[1]): Promise<void> => {
          batchSocketWrites(maConn)
          await target.upgradeInbound(maConn, opts)
        }
      }
      const v: unknown = Reflect.get(target, prop, target)
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    }
  })
}

/** Wraps a TCP transport factory so that every connection it dials or accepts writes in batches. */
export function withBatchedWrites<C> (factory: (components: C) => Transport): (components: C) => Transport {
  return (components: C): Transport => {
    const transport = factory(components)
    const dial = transport.dial.bind(transport)
    const createListener = transport.createListener.bind(transport)
    transport.dial = async (ma: Multiaddr, options: DialTransportOptions): Promise<Connection> =>
      await dial(ma, { ...options, upgrader: batchingUpgrader(options.upgrader) })
    transport.createListener = (options: CreateListenerOptions): Listener =>
      createListener({ ...options, upgrader: batchingUpgrader(options.upgrader) })
    return transport
  }
}
