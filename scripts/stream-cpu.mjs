// CPU per GiB of one bulk libp2p stream (TCP + Noise + Yamux) between two
// Node processes, each side measured on its own (process.cpuUsage, minor
// page faults). Build first (npx tsc -p tsconfig.json), then:
//   node_modules/.bin/node scripts/stream-cpu.mjs [MiB=512] [rounds=3]
// The sender sends like the piece server: each 4 MiB piece read into a pool
// buffer, sent in 1 MiB views (a setImmediate between them), the buffer back
// in the pool once Noise sealed it; STREAM_CPU_SEND=copy sends copies of the
// slices and reuses the buffer at once (as before). The receiver copies what
// arrives into a 4 MiB buffer like the piece client. Extra node flags for
// the child (e.g. --cpu-prof) go in STREAM_CPU_CHILD_FLAGS; STREAM_CPU_PLAIN_TCP=1
// uses @libp2p/tcp as it comes (no batched writes) on both sides, for A/B.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { transportModules } from '../dist/quic/transports.js'
import { whenSealed } from '../dist/quic/noise-crypto.js'

const PROTOCOL = '/bolt/bench/stream-cpu/1'
const MiB = 1024 * 1024
const SLICE = MiB
const PIECE = 4 * MiB

function usage () {
  const c = process.cpuUsage()
  const r = process.resourceUsage()
  return { user: c.user / 1e6, system: c.system / 1e6, faults: r.minorPageFault }
}
function diff (a, b) { return { user: b.user - a.user, system: b.system - a.system, faults: b.faults - a.faults } }

async function node () {
  const modules = transportModules()
  if (process.env.STREAM_CPU_PLAIN_TCP === '1') modules.transports = [tcp()]
  return await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, ...modules })
}

async function sender () {
  const n = await node()
  const source = new Uint8Array(PIECE)
  for (let i = 0; i < source.length; i += 4096) source[i] = i & 0xff
  const spares = []
  let made = 0
  const copySlices = process.env.STREAM_CPU_SEND === 'copy'
  await n.handle(PROTOCOL, async (stream) => {
    // The first 8 bytes the receiver sends: how many bytes it wants.
    let want = 0
    for await (const chunk of stream) {
      want = Number(new DataView(chunk.subarray().buffer, chunk.subarray().byteOffset).getBigUint64(0))
      break
    }
    const u0 = usage()
    const t0 = performance.now()
    // Each piece is read into a pool buffer (here: copied from `source`), then
    // sent as the piece server sends it.
    for (let off = 0; off < want; off += PIECE) {
      const len = Math.min(PIECE, want - off)
      const buf = spares.pop() ?? (made++, new Uint8Array(PIECE))
      buf.set(source.subarray(0, len))
      const bytes = buf.subarray(0, len)
      if (copySlices) {
        for (let o = 0; o < len; o += SLICE) {
          if (!stream.send(bytes.slice(o, o + SLICE))) await stream.onDrain()
          else await new Promise(resolve => setImmediate(resolve))
        }
        spares.push(buf)
      } else {
        whenSealed(bytes, () => spares.push(buf))
        for (let o = 0; o < len; o += SLICE) {
          if (!stream.send(bytes.subarray(o, o + SLICE))) await stream.onDrain()
          else await new Promise(resolve => setImmediate(resolve))
        }
      }
    }
    await stream.close()
    const u = diff(u0, usage())
    process.stdout.write(JSON.stringify({ side: 'sender', ms: performance.now() - t0, made, ...u }) + '\n')
  })
  process.stdout.write(JSON.stringify({ addr: n.getMultiaddrs()[0].toString() }) + '\n')
  process.stdin.on('end', () => { void n.stop().then(() => process.exit(0)) })
  process.stdin.resume()
}

async function receiver (mib, rounds) {
  const child = spawn(process.execPath, [...(process.env.STREAM_CPU_CHILD_FLAGS ?? '').split(' ').filter(Boolean), fileURLToPath(import.meta.url), 'sender'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = []
  let waiter
  let buf = ''
  child.stdout.on('data', (d) => {
    buf += d.toString()
    let i
    while ((i = buf.indexOf('\n')) >= 0) { lines.push(JSON.parse(buf.slice(0, i))); buf = buf.slice(i + 1); waiter?.() }
  })
  const next = async () => { while (lines.length === 0) await new Promise(resolve => { waiter = resolve }); return lines.shift() }
  const { addr } = await next()
  const n = await node()
  const { multiaddr } = await import('@multiformats/multiaddr')
  const conn = await n.dial(multiaddr(addr))
  const size = mib * MiB
  const pool = new Uint8Array(PIECE)
  const results = []
  for (let r = 0; r < rounds; r++) {
    const stream = await conn.newStream(PROTOCOL)
    const hdr = new Uint8Array(8)
    new DataView(hdr.buffer).setBigUint64(0, BigInt(size))
    const u0 = usage()
    const t0 = performance.now()
    stream.send(hdr)
    let got = 0
    let at = 0
    for await (const chunk of stream) {
      for (const b of (chunk instanceof Uint8Array ? [chunk] : chunk)) {
        let o = 0
        while (o < b.byteLength) {
          const n = Math.min(b.byteLength - o, PIECE - at)
          pool.set(o === 0 && n === b.byteLength ? b : b.subarray(o, o + n), at)
          at = (at + n) % PIECE
          o += n
        }
        got += b.byteLength
      }
    }
    const ms = performance.now() - t0
    const u = diff(u0, usage())
    if (got !== size) throw new Error(`got ${got} of ${size}`)
    const s = await next()
    const gib = size / (1024 * MiB)
    const row = {
      MBps: +(mib / (ms / 1000)).toFixed(0),
      recvCpuPerGiB: +((u.user + u.system) / gib).toFixed(2),
      recvSysPerGiB: +(u.system / gib).toFixed(2),
      recvFaultsPerMiB: +(u.faults / mib).toFixed(1),
      sendCpuPerGiB: +((s.user + s.system) / gib).toFixed(2),
      sendSysPerGiB: +(s.system / gib).toFixed(2),
      sendFaultsPerMiB: +(s.faults / mib).toFixed(1),
      sendPoolBuffers: s.made
    }
    results.push(row)
    console.log(JSON.stringify(row))
  }
  await n.stop()
  child.stdin.end()
  const med = (k) => { const v = results.map(x => x[k]).sort((a, b) => a - b); return v[Math.floor(v.length / 2)] }
  console.log('median', JSON.stringify(Object.fromEntries(Object.keys(results[0]).map(k => [k, med(k)]))), 'load', (await import('node:os')).loadavg().map(x => x.toFixed(1)).join(' '))
}

if (process.argv[2] === 'sender') await sender()
else await receiver(Number(process.argv[2] ?? 512), Number(process.argv[3] ?? 3))
