// Bridge networking for capsules (Docker's default, done with Debian's `ip`
// and `nft`): one Linux bridge per node holding the subnet's first address,
// one network namespace per capsule joined to it by a veth pair, outbound
// NAT, and published ports as elements of an nft map that DNATs host ports
// to capsule address and port. Every name carries this agent's prefix, so
// reconcile() removes exactly what this agent left and nothing of anyone else's.
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { runCommand, type CommandResult } from '../command.js'
import { NetworkSetupError, SubnetFullError } from '../errors.js'
import { mapTargets } from './port-map.js'
import { bridgeTable } from './bridge-table.js'
import { contains, formatSubnet, gatewayOf, macOfAddress, numberToIp, parseSubnet, subnetOf, subnetSize, type Subnet } from './cidr.js'

export const PortMappingSchema = z.object({
  host: z.number().int().min(1).max(65535),
  container: z.number().int().min(1).max(65535),
  proto: z.enum(['tcp', 'udp'])
})
export type PortMapping = z.infer<typeof PortMappingSchema>

const AttachmentSchema = z.object({
  name: z.string(),
  netns: z.string(),
  veth: z.string(),
  address: z.string(),
  ports: z.array(PortMappingSchema),
  /** When it was attached (ms): of two records that claim one host port, the later one holds it. */
  at: z.number().default(0)
})
/** What one capsule holds of the network; written before the first kernel object is made, so a crash leaves a record to clean by. */
export type Attachment = z.infer<typeof AttachmentSchema>

export interface BridgeOptions {
  /** The bridge interface, e.g. bolt0 (at most 15 characters). */
  bridge: string
  /** The node's capsule subnet, e.g. 10.88.3.0/24. */
  subnet: string
  /** Unique to this agent (its data dir): namespaces and veths are named from it. */
  prefix: string
  /** Where attachment records live. */
  stateDir: string
}

export { BRIDGE_DNS_PORT } from './bridge-table.js'

/**
 * MTU of the bridge and of both ends of every capsule's veth: traffic that
 * stays on the node (capsule to capsule, to the gateway's published ports,
 * host to capsule) moves in loopback-sized segments. At 1500 a bulk TCP
 * receiver that reads a few KiB at a time spends most of its time per
 * segment; bridge-throughput measured 0.55–0.74 of loopback at 1500 and
 * about 0.9–1.0 here. Traffic through the default route keeps UPLINK_MTU.
 */
export const BRIDGE_MTU = 65535
/** MTU of a capsule's default route: what leaves the node, as before (the MSS it advertises, the UDP it fragments). */
export const UPLINK_MTU = 1500

const IFNAME_RE = /^[a-zA-Z0-9_.-]{1,15}$/
const NETNS_DIR = '/run/netns'

/** Reads and writes /proc/sys; a seam so unit tests can run without touching the host. */
async function sysctl (path: string, value: string): Promise<void> {
  await writeFile(join('/proc/sys', path), value).catch((err: Error) => {
    throw new NetworkSetupError(`cannot set ${path.replaceAll('/', '.')}=${value}: ${err.message}`)
  })
}

function hash8 (text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 8)
}

export class BridgeNetwork {
  readonly subnet: Subnet
  readonly gateway: string
  /** The nft table of this bridge (ip family): its maps hold the published ports. */
  readonly table: string
  private ready: Promise<void> | undefined
  private lock: Promise<void> = Promise.resolve()
  /** Set up in this process (and not destroyed since). */
  private up = false
  private readonly readyHooks: Array<() => Promise<void>> = []
  /** The bridge's MTU once set up here (BRIDGE_MTU), undefined where the kernel refused it. */
  private mtu: number | undefined

  constructor (private readonly o: BridgeOptions) {
    if (!IFNAME_RE.test(o.bridge)) throw new NetworkSetupError(`bridge name ${o.bridge} is not a valid interface name (letters, digits, _ . -, at most 15)`)
    this.subnet = parseSubnet(o.subnet)
    this.gateway = gatewayOf(this.subnet)
    this.table = `bolt_${o.bridge.replace(/[^a-zA-Z0-9_]/g, '_')}`
  }

  get bridge (): string { return this.o.bridge }
  netnsName (capsule: string): string { return `${this.o.prefix}-${capsule}` }
  vethName (capsule: string): string { return `bv${hash8(`${this.o.prefix}/${capsule}`)}` }

  /** Creates the bridge, forwarding and the nft table once; safe to call again (an adopted bridge keeps its capsules). */
  async ensure (): Promise<void> {
    // Agents on one host share the bridge, and one that leaves (a dev agent,
    // `leave`) removes it with its nft table once nothing is attached: set
    // it up again, with this agent's published ports.
    const gone = this.up && this.bridgeGone()
    if (gone) { this.ready = undefined; this.up = false }
    this.ready ??= this.setUp().catch(err => { this.ready = undefined; throw err })
    await this.ready
    if (gone) await this.rebuildPortMaps(await this.records())
  }

  /** Whether the bridge is missing now (a stat in sysfs, no process spawned). */
  private bridgeGone (): boolean { return !existsSync(`/sys/class/net/${this.o.bridge}`) }

  /**
   * Runs `fn` whenever this process has set the bridge up (now, if it has):
   * before the capsule that asked for the bridge attaches, so what `fn`
   * starts (the agent's DNS on the gateway) is there for that capsule's
   * first query. A failing `fn` fails nothing else.
   */
  async onReady (fn: () => Promise<void>): Promise<void> {
    this.readyHooks.push(fn)
    if (this.up) await fn().catch(() => undefined) // hooks log their own failures (ServicesHost's DNS does)
  }

  private async setUp (): Promise<void> {
    const br = this.o.bridge
    if ((await runCommand('ip', ['link', 'show', 'dev', br])).exitCode !== 0) {
      await this.ip(['link', 'add', br, 'type', 'bridge']).catch((err: Error) => {
        // Agents on one host share the default bridge: another may add it between the check and this add.
        if (!/File exists/.test(err.message)) throw err
      })
    }
    await this.ip(['addr', 'replace', `${this.gateway}/${this.subnet.prefix}`, 'dev', br])
    // Set, not inherited from the ports: a bridge keeps an MTU set by hand when ports come and go.
    // A kernel that refuses it keeps its default, and so do the veths (capsules work, at 1500).
    this.mtu = (await runCommand('ip', ['link', 'set', br, 'mtu', String(BRIDGE_MTU)])).exitCode === 0 ? BRIDGE_MTU : undefined
    await this.ip(['link', 'set', br, 'up'])
    // Forwarding for outbound NAT; route_localnet so 127.0.0.1:HOSTPORT may be DNATed onto the bridge.
    await sysctl('net/ipv4/ip_forward', '1')
    await sysctl(`net/ipv4/conf/${br}/route_localnet`, '1')
    await this.nft(bridgeTable(this.table, br, formatSubnet(this.subnet), this.gateway))
    this.up = true
    for (const hook of [...this.readyHooks]) await hook().catch(() => undefined) // hooks log their own failures
  }

  /**
   * A namespace for `capsule` on the bridge, with the next free address, a
   * default route through the bridge, and its published ports forwarded.
   * Returns the namespace path for the OCI bundle.
   */
  async attach (capsule: string, ports: PortMapping[], signal?: AbortSignal, retried = false): Promise<Attachment & { netnsPath: string }> {
    await this.ensure()
    const a = await this.serial(async () => {
      const used = new Set((await this.records()).map(r => r.address))
      used.add(this.gateway)
      let address: string | undefined
      const size = subnetSize(this.subnet)
      for (let i = 2; i < size - 1; i++) {
        const ip = numberToIp(this.subnet.base + i)
        if (!used.has(ip)) { address = ip; break }
      }
      if (address === undefined) throw new SubnetFullError(`the capsule subnet ${formatSubnet(this.subnet)} has no free address (remove capsules, or set a larger [network] subnet)`)
      const rec: Attachment = { name: capsule, netns: this.netnsName(capsule), veth: this.vethName(capsule), address, ports, at: Date.now() }
      await this.writeRecord(rec)
      return rec
    })
    try {
      signal?.throwIfAborted()
      const peer = `bp${this.vethName(capsule).slice(2)}`
      const mtu = this.mtu !== undefined ? `mtu ${this.mtu} ` : ''
      // Two `ip` processes, not nine: one batch on the host, one inside the namespace (each stops at its first failing line).
      await this.ipBatch([], [
        `netns add ${a.netns}`,
        `link add ${a.veth} ${mtu}type veth peer name ${peer} ${mtu}address ${macOfAddress(a.address)} netns ${a.netns}`,
        `link set ${a.veth} master ${this.o.bridge} up`
      ])
      await this.ipBatch(['-n', a.netns], [
        `link set ${peer} name eth0`,
        `addr add ${a.address}/${this.subnet.prefix} dev eth0`,
        'link set eth0 up',
        'link set lo up',
        // The subnet's route (the bridge, the gateway, other capsules) has the veth's MTU; everything else UPLINK_MTU.
        `route add default via ${this.gateway} mtu ${UPLINK_MTU}`
      ])
      if (ports.length > 0) await this.publish(a.address, ports)
    } catch (err) {
      await this.detach(capsule).catch(() => undefined) // undo what attached; the attach error is the one to report, reconcile() clears the rest
      // Removed under us by another agent leaving (between its check and our attach): once more, on a bridge set up again.
      if (!retried && this.bridgeGone() && signal?.aborted !== true) return await this.attach(capsule, ports, signal, true)
      throw err
    }
    return { ...a, netnsPath: join(NETNS_DIR, a.netns) }
  }

  /** Removes what `capsule` holds: its port forwards, veth and namespace. Missing pieces are fine (a crash may have left half). */
  async detach (capsule: string): Promise<void> {
    const rec = await this.readRecord(capsule)
    const netns = rec?.netns ?? this.netnsName(capsule)
    const veth = rec?.veth ?? this.vethName(capsule)
    if (rec !== undefined && rec.ports.length > 0) {
      await this.serial(async () => {
        const now = await this.mapsNow(rec.ports)
        for (const p of rec.ports) {
          // Only the element that still points at this capsule: the scheduler may already have given the port to another.
          if (now[p.proto].get(p.host) === rec.address) await this.nft(`delete element ip ${this.table} ${p.proto}_ports { ${p.host} }\n`).catch(() => undefined) // gone already: nothing to delete
        }
      })
    }
    // No record and no namespace: the capsule never had a network here (or it is gone already).
    if (rec !== undefined || existsSync(join(NETNS_DIR, netns))) {
      // One process; -force goes on past a piece a crash already removed (the veth dies with its namespace anyway).
      await runCommand('ip', ['-force', '-batch', '-'], { input: `link del ${veth}\nnetns del ${netns}\n` })
    }
    await rm(join(this.o.stateDir, `${capsule}.json`), { force: true })
  }

  /**
   * At start and after crashes: detaches every capsule not in `live`, removes
   * namespaces of this agent that no record claims (their veths go with them),
   * and rebuilds the port maps from the live records. Returns the names cleaned.
   */
  async reconcile (live: ReadonlySet<string>): Promise<string[]> {
    const cleaned: string[] = []
    const records = await this.records()
    for (const r of records) {
      if (!live.has(r.name)) { await this.detach(r.name); cleaned.push(r.name) }
    }
    const kept = records.filter(r => live.has(r.name))
    const keptNs = new Set(kept.map(r => r.netns))
    const mine = `${this.o.prefix}-`
    const nsList = (await runCommand('ip', ['netns', 'list'])).stdout.split('\n').map(l => l.split(' ')[0] ?? '').filter(n => n.startsWith(mine))
    for (const ns of nsList) {
      if (keptNs.has(ns)) continue
      await runCommand('ip', ['netns', 'del', ns])
      cleaned.push(ns)
    }
    // A veth dies with its namespace (deleting the peer deletes the pair): no scan of the bridge's ports needed.
    if (this.ready !== undefined || records.length > 0) {
      await this.ensure()
      await this.rebuildPortMaps(kept)
    }
    return cleaned
  }

  /**
   * Sets the port maps to the published ports of `records`. Agents on one
   * host share the table: a forward into another agent's subnet (one that
   * agent set on the bridge) stays, unless one of `records` holds that port
   * now; every other forward was this agent's, or nobody's, and goes.
   */
  private async rebuildPortMaps (records: Attachment[]): Promise<void> {
    await this.serial(async () => {
      const others = await this.otherSubnets()
      const theirs = (address: string): boolean => others.some(s => contains(s, address))
      const lines: string[] = []
      for (const proto of ['tcp', 'udp'] as const) {
        // A capsule whose removal a crash interrupted may still claim a port its successor holds: the later attachment wins.
        const want = new Map<number, string>()
        for (const r of [...records].sort((a, b) => a.at - b.at)) for (const p of r.ports) if (p.proto === proto) want.set(p.host, `${r.address} . ${p.container}`)
        for (const [port, address] of await this.mapTargets(proto)) {
          if (want.has(port) || contains(this.subnet, address) || !theirs(address)) lines.push(`delete element ip ${this.table} ${proto}_ports { ${port} }`)
        }
        for (const [port, target] of want) lines.push(`add element ip ${this.table} ${proto}_ports { ${port} : ${target} }`)
      }
      if (lines.length > 0) await this.nft(lines.join('\n') + '\n')
    })
  }

  /** The subnets other agents on this host set on the bridge (each agent adds its gateway address). */
  private async otherSubnets (): Promise<Subnet[]> {
    const r = await runCommand('ip', ['-j', 'addr', 'show', 'dev', this.o.bridge])
    if (r.exitCode !== 0) return []
    let links: Array<{ addr_info?: Array<{ family?: string, local?: string, prefixlen?: number }> }>
    try { links = JSON.parse(r.stdout) } catch { return [] } // no JSON from ip: no other agent known, so none of its forwards are kept
    const out: Subnet[] = []
    for (const a of links.flatMap(l => l.addr_info ?? [])) {
      if (a.family !== 'inet' || a.local === undefined || a.local === this.gateway) continue
      try { out.push(subnetOf(a.local, a.prefixlen ?? 32)) } catch { continue } // an address ip printed oddly: not an agent's subnet
    }
    return out
  }

  /**
   * Forwards host ports to `address`. A port still forwarded to a capsule
   * that is being removed (its node had not torn it down when the scheduler
   * freed the port) is taken over in the same nft transaction.
   */
  private async publish (address: string, ports: PortMapping[]): Promise<void> {
    await this.serial(async () => {
      const now = await this.mapsNow(ports)
      const lines: string[] = []
      for (const p of ports) {
        if (now[p.proto].has(p.host)) lines.push(`delete element ip ${this.table} ${p.proto}_ports { ${p.host} }`)
        lines.push(`add element ip ${this.table} ${p.proto}_ports { ${p.host} : ${address} . ${p.container} }`)
      }
      await this.nft(lines.join('\n') + '\n')
    })
  }

  /** The forwards now in the maps that `ports` use: one `nft` listing per protocol, not one per port. */
  private async mapsNow (ports: PortMapping[]): Promise<Record<'tcp' | 'udp', Map<number, string>>> {
    const list = async (proto: 'tcp' | 'udp'): Promise<Map<number, string>> => ports.some(p => p.proto === proto) ? await this.mapTargets(proto) : new Map()
    return { tcp: await list('tcp'), udp: await list('udp') }
  }

  /** Every forward in a port map now: host port → capsule address (none when the map is missing). */
  private async mapTargets (proto: 'tcp' | 'udp'): Promise<Map<number, string>> {
    const r = await runCommand('nft', ['-j', 'list', 'map', 'ip', this.table, `${proto}_ports`])
    return r.exitCode === 0 ? mapTargets(r.stdout) : new Map()
  }

  /**
   * Removes the bridge and the nft table (an ephemeral dev agent); capsules
   * must be detached first. Another agent on this host may use a bridge of
   * the same name (several agents on one machine, as in tests): while any
   * interface is still attached to it, both stay.
   */
  async destroy (): Promise<void> {
    const attached = await runCommand('ip', ['-j', 'link', 'show', 'master', this.o.bridge])
    if (attached.exitCode === 0 && !['', '[]'].includes(attached.stdout.trim())) return
    await runCommand('nft', ['delete', 'table', 'ip', this.table])
    await runCommand('ip', ['link', 'del', this.o.bridge])
    this.ready = undefined
    this.up = false
  }

  async records (): Promise<Attachment[]> {
    const names = await readdir(this.o.stateDir).catch(() => [] as string[]) // no state dir before the first attach: no records
    const out: Attachment[] = []
    for (const n of names) {
      if (!n.endsWith('.json')) continue
      const r = await this.readRecord(n.slice(0, -5))
      if (r !== undefined) out.push(r)
    }
    return out
  }

  private async readRecord (capsule: string): Promise<Attachment | undefined> {
    const text = await readFile(join(this.o.stateDir, `${capsule}.json`), 'utf8').catch(() => undefined) // none: never attached, or detached
    if (text === undefined) return undefined
    try {
      const r = AttachmentSchema.safeParse(JSON.parse(text))
      return r.success ? r.data : undefined
    } catch {
      return undefined // a record torn by a crash: reconcile() finds its namespace by prefix
    }
  }

  private async writeRecord (rec: Attachment): Promise<void> {
    await mkdir(this.o.stateDir, { recursive: true, mode: 0o700 })
    const file = join(this.o.stateDir, `${rec.name}.json`)
    await writeFile(`${file}.tmp`, JSON.stringify(rec))
    const { rename } = await import('node:fs/promises')
    await rename(`${file}.tmp`, file)
  }

  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const prev = this.lock
    let release!: () => void
    this.lock = new Promise<void>(resolve => { release = resolve })
    await prev
    try { return await fn() } finally { release() }
  }

  private async ip (args: string[]): Promise<CommandResult> {
    const r = await runCommand('ip', args).catch((err: Error) => { throw new NetworkSetupError(`ip could not be started: ${err.message} (apt-get install iproute2)`) })
    if (r.exitCode !== 0) throw new NetworkSetupError(`ip ${args.join(' ')} failed: ${r.stderr.trim()}`)
    return r
  }

  /**
   * Runs `lines` through one `ip [args] -batch -`. Every name in them is
   * this agent's own (prefix, hashed veths, validated capsule names), so
   * none holds the spaces, quotes or `#` that batch lines would split on.
   */
  private async ipBatch (args: string[], lines: string[]): Promise<void> {
    const r = await runCommand('ip', [...args, '-batch', '-'], { input: lines.join('\n') + '\n' }).catch((err: Error) => { throw new NetworkSetupError(`ip could not be started: ${err.message} (apt-get install iproute2)`) })
    if (r.exitCode === 0) return
    const at = Number(/Command failed -:(\d+)/.exec(r.stderr)?.[1] ?? 0)
    const line = lines[at - 1] ?? lines.join('; ')
    throw new NetworkSetupError(`ip ${[...args, line].join(' ')} failed: ${r.stderr.replace(/Command failed -:\d+/, '').trim().replace(/\s*\n\s*/g, '; ')}`)
  }

  private async nft (script: string): Promise<void> {
    const r = await runCommand('nft', ['-f', '-'], { input: script }).catch((err: Error) => { throw new NetworkSetupError(`nft could not be started: ${err.message} (apt-get install nftables)`) })
    if (r.exitCode !== 0) throw new NetworkSetupError(`nft failed: ${r.stderr.trim().split('\n')[0] ?? ''}`)
  }
}
