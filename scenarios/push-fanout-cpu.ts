// CPU accounting for push-fanout: who spent the machine's CPU in each half
// (the agents, the skopeo clients, docker-registry), read from /proc. On a
// 2-core machine a half can take no less wall time than its CPU-seconds / 2.
import { createCipheriv, createDecipheriv, createHash, createSecretKey, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Clock ticks per second of /proc (USER_HZ, 100 on Linux). */
const USER_HZ = 100

/** The fields of a /proc stat file after the command name, and the command name. */
async function statFields (file: string): Promise<{ comm: string, fields: string[] }> {
  const text = await readFile(file, 'utf8')
  const close = text.lastIndexOf(') ')
  return { comm: text.slice(text.indexOf('(') + 1, close), fields: text.slice(close + 2).split(' ') }
}

/** User + system CPU seconds at `field` and the next one. */
function cpuAt (fields: string[], field: number): number {
  return (Number(fields[field]) + Number(fields[field + 1])) / USER_HZ
}

export interface CpuSample {
  /** Wall clock (performance.now(), ms). */
  at: number
  /** The agents' processes, summed. */
  agents: number
  /** Of which in the kernel (system time): page faults, socket and file copies. */
  agentsSystem: number
  /** The agents' minor page faults (first touches of fresh memory), summed. */
  agentsMinorFaults: number
  /** This process's children that have exited and been waited for: the skopeo clients. */
  clients: number
  /** Live children named `comm` (docker-registry), summed. */
  registry: number
  /** This process (the scenario's own work, e.g. building the image). */
  self: number
  /** Busy CPU seconds of the whole machine, all cores. */
  machineBusy: number
}

/** Reads one sample; a pid that is gone counts 0 (it has exited: its CPU is in `clients` once waited for). */
export async function sampleCpu (agentPids: number[], registryComm = 'docker-registry'): Promise<CpuSample> {
  const at = performance.now()
  let agents = 0
  let agentsSystem = 0
  let agentsMinorFaults = 0
  for (const pid of agentPids) {
    // An agent that is gone adds nothing (it was killed or crashed: the scenario fails on its own).
    const s = await statFields(`/proc/${pid}/stat`).catch(() => undefined)
    if (s === undefined) continue
    agents += cpuAt(s.fields, 11)
    agentsSystem += Number(s.fields[12]) / USER_HZ
    agentsMinorFaults += Number(s.fields[7])
  }
  const self = await statFields('/proc/self/stat')
  let registry = 0
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    // A process may exit between readdir and this read: it is not the registry then.
    const s = await statFields(`/proc/${pid}/stat`).catch(() => undefined)
    if (s !== undefined && s.comm === registryComm && Number(s.fields[1]) === process.pid) registry += cpuAt(s.fields, 11)
  }
  const cols = (await readFile('/proc/stat', 'utf8')).split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? []
  const idle = (cols[3] ?? 0) + (cols[4] ?? 0)
  const machineBusy = (cols.reduce((a, b) => a + b, 0) - idle) / USER_HZ
  return { at, agents, agentsSystem, agentsMinorFaults, clients: cpuAt(self.fields, 13), registry, self: cpuAt(self.fields, 11), machineBusy }
}

/** CPU seconds spent between two samples, per party, and the wall seconds between them. */
export function cpuBetween (a: CpuSample, b: CpuSample): Omit<CpuSample, 'at'> & { wall: number } {
  return {
    wall: (b.at - a.at) / 1000,
    agents: b.agents - a.agents,
    agentsSystem: b.agentsSystem - a.agentsSystem,
    agentsMinorFaults: b.agentsMinorFaults - a.agentsMinorFaults,
    clients: b.clients - a.clients,
    registry: b.registry - a.registry,
    self: b.self - a.self,
    machineBusy: b.machineBusy - a.machineBusy
  }
}

/** One report line: `label: wall W s, CPU-s agents A, clients C, registry R, machine M`. */
export function cpuLine (label: string, d: ReturnType<typeof cpuBetween>): string {
  return `# ${label}: wall ${d.wall.toFixed(2)} s, CPU-s agents ${d.agents.toFixed(1)} (kernel ${d.agentsSystem.toFixed(1)}, ${(d.agentsMinorFaults / 1000).toFixed(0)}k minor faults), skopeo ${d.clients.toFixed(1)}, docker-registry ${d.registry.toFixed(1)}, machine busy ${d.machineBusy.toFixed(1)}\n`
}

const MiB = 1024 * 1024
/** Noise's largest message body (65,535 bytes less its 16-byte tag). */
const NOISE_MESSAGE_BYTES = 65_519

/**
 * The least CPU, in ms per MiB, that a byte moved from one agent to another
 * costs beyond what a registry pays to serve it: ChaCha20-Poly1305 sealing
 * and opening in Noise-sized messages (Node's crypto, one key object), one
 * SHA-256 pass to verify it and one write into a new file to store it. Best
 * of `rounds` over `mib` MiB, in this process; framing, copies, sockets and
 * allocation are left out, so no implementation on this machine does better.
 */
export function meshFloorMsPerMiB (mib = 32, rounds = 3): number {
  // Whole messages only, so every message opened is as long as every one sealed.
  const data = randomBytes(Math.ceil(mib * MiB / NOISE_MESSAGE_BYTES) * NOISE_MESSAGE_BYTES)
  const dir = mkdtempSync(join(tmpdir(), 'bolt-push-fanout-floor-'))
  try {
    let best = Infinity
    for (let r = 0; r < rounds; r++) best = Math.min(best, moveOnce(data, join(dir, `floor-${r}`)))
    return best
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** One round of meshFloorMsPerMiB: CPU ms per MiB to seal, open, hash and store `data`. */
function moveOnce (data: Uint8Array, file: string): number {
  const key = createSecretKey(randomBytes(32))
  const iv = Buffer.alloc(12)
  const t0 = process.cpuUsage()
  let sealed = Buffer.alloc(0)
  let tag = Buffer.alloc(0)
  for (let off = 0; off < data.byteLength; off += NOISE_MESSAGE_BYTES) {
    const c = createCipheriv('chacha20-poly1305', key, iv, { authTagLength: 16 })
    sealed = c.update(data.subarray(off, off + NOISE_MESSAGE_BYTES))
    c.final()
    tag = c.getAuthTag()
  }
  for (let off = 0; off < data.byteLength; off += NOISE_MESSAGE_BYTES) {
    // Opens the last sealed message each time: the same work per byte, and its tag checks.
    const d = createDecipheriv('chacha20-poly1305', key, iv, { authTagLength: 16 })
    d.setAuthTag(tag)
    d.update(sealed)
    d.final()
  }
  createHash('sha256').update(data).digest()
  // Page-cache pages are fresh memory: on some VMs the store's write costs more than the crypto.
  writeFileSync(file, data)
  const used = process.cpuUsage(t0)
  rmSync(file)
  return (used.user + used.system) / 1000 / (data.byteLength / MiB)
}
