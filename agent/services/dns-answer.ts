// Answers one DNS query for the cluster's names, or says to forward it: the
// pure half of the agent's DNS server (no sockets), so it is fuzzed alone.
// `NAME.service.bolt` (and RFC 2782's `_NAME._tcp.service.bolt`) gives A/AAAA
// records of the nodes with a healthy instance and SRV records of their host
// ports, whose targets `HEX.addr.bolt` resolve to the node address; any other
// name under `.bolt` is NXDOMAIN; names outside `.bolt` are forwarded.
// Malformed queries get FORMERR when their header can be read, else nothing.
import dnsPacket from 'dns-packet'
import type { Answer, DecodedPacket, Packet, Question } from 'dns-packet'
import type { CatalogEntry } from '../state/services.js'

export const DNS_TTL_S = 5
export const DOMAIN = 'bolt'
/** Classic UDP payload limit without EDNS: larger answers are truncated (TC) so the client asks over TCP. */
export const MAX_UDP_ANSWER = 512
/** Largest EDNS UDP payload we honour. */
export const MAX_EDNS_UDP = 4096

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const
const QR = 0x8000
const OPCODE_MASK = 0x7800
const RD = 0x0100

export type DnsDecision =
  | { kind: 'answer', bytes: Buffer }
  | { kind: 'forward' }
  | { kind: 'drop' }

/** The healthy entries of one service (case-insensitive name). */
export type ServiceLookup = (service: string) => CatalogEntry[]

/** A reply with only a header and rcode, for a query we could not (or will not) parse. */
export function headerOnlyReply (msg: Uint8Array, rcode: number): Buffer {
  const b = Buffer.alloc(12)
  b.writeUInt16BE(((msg[0] ?? 0) << 8) | (msg[1] ?? 0), 0)
  const flags = ((msg[2] ?? 0) << 8) | (msg[3] ?? 0)
  b.writeUInt16BE(QR | (flags & (OPCODE_MASK | RD)) | rcode, 2)
  return b
}

/** Decides what to do with one query message (UDP payload or TCP frame body). */
export function answerQuery (msg: Buffer, lookup: ServiceLookup, transport: 'udp' | 'tcp'): DnsDecision {
  if (msg.byteLength < 12) return { kind: 'drop' }
  const flags = msg.readUInt16BE(2)
  if ((flags & QR) !== 0) return { kind: 'drop' } // a response: answering it could loop two servers
  if ((flags & OPCODE_MASK) !== 0) return { kind: 'answer', bytes: headerOnlyReply(msg, RCODE.NOTIMP) }
  let q: DecodedPacket
  try {
    q = dnsPacket.decode(msg)
  } catch {
    return { kind: 'answer', bytes: headerOnlyReply(msg, RCODE.FORMERR) }
  }
  const question = q.questions?.[0]
  if (q.questions?.length !== 1 || question === undefined || typeof question.name !== 'string') return { kind: 'answer', bytes: headerOnlyReply(msg, RCODE.FORMERR) }
  const name = question.name.toLowerCase().replace(/\.$/, '')
  if (name !== DOMAIN && !name.endsWith('.' + DOMAIN)) return { kind: 'forward' }
  const { rcode, answers, additionals } = resolveLocal(name, question, lookup)
  const ednsSize = q.additionals?.find(a => a.type === 'OPT') !== undefined ? Math.min(MAX_EDNS_UDP, Math.max(MAX_UDP_ANSWER, (q.additionals.find(a => a.type === 'OPT') as { udpPayloadSize?: number }).udpPayloadSize ?? MAX_UDP_ANSWER)) : MAX_UDP_ANSWER
  const reply: Packet = {
    type: 'response',
    id: q.id ?? 0,
    flags: dnsPacket.AUTHORITATIVE_ANSWER | (flags & RD) | rcode,
    questions: [question],
    answers,
    additionals
  }
  let bytes = dnsPacket.encode(reply)
  if (transport === 'udp' && bytes.byteLength > ednsSize) {
    bytes = dnsPacket.encode({ ...reply, flags: (reply.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE, answers: [], additionals: [] })
  }
  return { kind: 'answer', bytes }
}

function resolveLocal (name: string, question: Question, lookup: ServiceLookup): { rcode: number, answers: Answer[], additionals: Answer[] } {
  const nx = { rcode: RCODE.NXDOMAIN, answers: [], additionals: [] }
  const qtype: string = question.type // dns-packet decodes ANY (255) too, though its types omit it
  const labels = name.split('.')
  // HEX.addr.bolt: the SRV targets.
  if (labels.length === 3 && labels[1] === 'addr') {
    const ip = addressOfLabel(labels[0] ?? '')
    if (ip === undefined) return nx
    const rr = addressRecord(question.name, ip)
    return { rcode: RCODE.NOERROR, answers: rr.type === qtype || qtype === 'ANY' ? [rr] : [], additionals: [] }
  }
  // NAME.service.bolt or _NAME._PROTO.service.bolt
  let service: string | undefined
  let proto: 'tcp' | 'udp' | undefined
  if (labels.length === 3 && labels[1] === 'service') service = labels[0]
  else if (labels.length === 4 && labels[2] === 'service' && labels[0]?.startsWith('_') === true && (labels[1] === '_tcp' || labels[1] === '_udp')) {
    service = labels[0].slice(1)
    proto = labels[1] === '_tcp' ? 'tcp' : 'udp'
  }
  if (service === undefined || service === '') return nx
  const entries = lookup(service).filter(e => e.health === 'healthy')
  if (entries.length === 0) return nx
  const answers: Answer[] = []
  const additionals: Answer[] = []
  const wantAddr = qtype === 'A' || qtype === 'AAAA' || qtype === 'ANY'
  const wantSrv = qtype === 'SRV' || qtype === 'ANY'
  if (wantAddr && proto === undefined) {
    const seen = new Set<string>()
    for (const e of entries) {
      if (seen.has(e.address)) continue
      seen.add(e.address)
      const rr = addressRecord(question.name, e.address)
      if (rr.type === qtype || qtype === 'ANY') answers.push(rr)
    }
  }
  if (wantSrv) {
    const targets = new Map<string, string>()
    for (const e of entries) {
      const target = `${labelOfAddress(e.address)}.addr.${DOMAIN}`
      targets.set(target, e.address)
      for (const p of e.ports) {
        if (proto !== undefined && p.proto !== proto) continue
        answers.push({ type: 'SRV', name: question.name, ttl: DNS_TTL_S, data: { priority: 1, weight: 1, port: p.host, target } })
      }
    }
    for (const [target, ip] of targets) additionals.push(addressRecord(target, ip))
  }
  return { rcode: RCODE.NOERROR, answers, additionals }
}

function addressRecord (name: string, ip: string): Answer {
  return ip.includes(':') ? { type: 'AAAA', name, ttl: DNS_TTL_S, data: ip } : { type: 'A', name, ttl: DNS_TTL_S, data: ip }
}

/** 10.0.0.5 → 0a000005; IPv6 → its 32 hex digits. */
export function labelOfAddress (ip: string): string {
  if (!ip.includes(':')) return ip.split('.').map(o => Number(o).toString(16).padStart(2, '0')).join('')
  const [head = '', tail = ''] = ip.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail === '' ? [] : tail.split(':')
  const groups = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h
  return groups.map(g => g.padStart(4, '0')).join('')
}

function addressOfLabel (label: string): string | undefined {
  if (/^[0-9a-f]{8}$/.test(label)) return [0, 2, 4, 6].map(i => parseInt(label.slice(i, i + 2), 16)).join('.')
  if (/^[0-9a-f]{32}$/.test(label)) return Array.from({ length: 8 }, (_, i) => label.slice(i * 4, i * 4 + 4)).join(':')
  return undefined
}
