// A small network of namespaces for edge tests: a LAN (a bridge in a hub
// namespace) with hosts on 10.77.0.0/24 (or another /24, e.g. one libp2p does
// not count as private, to play the internet), and NAT routers, each with one
// host behind it on its own 10.77.N.0/24 masqueraded to the router's LAN address.
// Addresses exist only inside these namespaces. Agents run inside them with
// `ip netns exec`; their API listens on the namespace's loopback, so client
// commands run there too.
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { AgentProcess, FAST_TOML, type CliResult, type ReadyLine } from '../helpers/harness.js'

const exec = promisify(execFile)

export async function sh (cmd: string, args: string[], input?: string): Promise<string> {
  if (input === undefined) return (await exec(cmd, args, { timeout: 20_000 })).stdout
  return await new Promise((resolve, reject) => {
    const p = execFile(cmd, args, { timeout: 20_000 }, (err, stdout) => { if (err !== null) reject(err); else resolve(stdout) })
    // A command that exits before reading its input (nc: connection refused) makes the write fail with
    // EPIPE; its exit status is the error to report, through the callback above, not an uncaught one.
    p.stdin?.on('error', () => {})
    p.stdin?.end(input)
  })
}

/** Why namespaces cannot be used here, or undefined when they can. */
export async function netnsUnavailable (): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'network namespaces need Linux'
  if (process.getuid?.() !== 0) return 'network namespaces need root (ip netns add)'
  const probe = `boltprobe${process.pid}`
  try {
    await sh('ip', ['netns', 'add', probe])
  } catch (err) {
    return `cannot create a network namespace (ip netns add): ${(err as Error).message.split('\n')[0] ?? ''}`
  }
  try {
    await sh('ip', ['netns', 'exec', probe, 'nft', 'list', 'tables'])
  } catch (err) {
    return `nft does not work in a namespace: ${(err as Error).message.split('\n')[0] ?? ''}`
  } finally {
    await sh('ip', ['netns', 'del', probe]).catch(() => {})
  }
  return undefined
}

export interface Host { ns: string, addr: string }

/**
 * How a NAT router picks the outside port of a flow. `preserve`: Linux
 * masquerade keeps the inside source port when it is free, so one socket gets
 * the same outside port towards every peer (endpoint-independent mapping, the
 * kind hole punching needs). `random`: a fresh random port per flow
 * (symmetric-like: the port a relay observes is useless to anyone else).
 */
export type NatMapping = 'preserve' | 'random'

export class NetLab {
  private readonly namespaces: string[] = []
  private nextLan = 1
  private nextNat = 1
  readonly hub: string
  private constructor (readonly tag: string, readonly lanPrefix: string) { this.hub = `${tag}-hub` }

  /**
   * A lab with its LAN bridge; `tag` keeps names unique (interface names stay
   * ≤ 15 chars). `lanPrefix`: the LAN's /24, default 10.77.0.
   */
  static async create (opts: { lanPrefix?: string } = {}): Promise<NetLab> {
    const lab = new NetLab(`b${process.pid % 100000}`, opts.lanPrefix ?? '10.77.0')
    await lab.addNs(lab.hub)
    await lab.ip(lab.hub, 'link', 'add', 'br0', 'type', 'bridge')
    await lab.ip(lab.hub, 'link', 'set', 'br0', 'up')
    return lab
  }

  private async addNs (ns: string): Promise<void> {
    await sh('ip', ['netns', 'add', ns])
    this.namespaces.push(ns)
    await this.ip(ns, 'link', 'set', 'lo', 'up')
  }

  async ip (ns: string, ...args: string[]): Promise<string> { return await sh('ip', ['-n', ns, ...args]) }
  async nft (ns: string, script: string): Promise<void> { await sh('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], script) }

  /** Plugs a namespace into the LAN bridge with the LAN's next address. */
  private async plug (ns: string, ifname: string): Promise<string> {
    const i = this.nextLan++
    const peer = `${this.tag}l${i}`
    await sh('ip', ['link', 'add', ifname, 'netns', ns, 'type', 'veth', 'peer', 'name', peer, 'netns', this.hub])
    await this.ip(this.hub, 'link', 'set', peer, 'master', 'br0')
    await this.ip(this.hub, 'link', 'set', peer, 'up')
    const addr = `${this.lanPrefix}.${i}`
    await this.ip(ns, 'addr', 'add', `${addr}/24`, 'dev', ifname)
    await this.ip(ns, 'link', 'set', ifname, 'up')
    return addr
  }

  /** A host on the LAN (no default route: it reaches the LAN only). Multicast routed to the LAN for mDNS. */
  async lanHost (name: string): Promise<Host> {
    const ns = `${this.tag}-${name}`
    await this.addNs(ns)
    const addr = await this.plug(ns, 'eth0')
    await this.ip(ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0')
    return { ns, addr }
  }

  /**
   * A host behind its own NAT router: router on the LAN, the host on
   * 10.77.N.2 with the router as default gateway; the router masquerades
   * outbound traffic and drops new inbound connections, so LAN hosts cannot
   * dial the host (they have no route to it either). `reachOnly`: the
   * host may open connections to these LAN addresses only. The router itself
   * drops unsolicited inbound packets, as home routers do (they would
   * otherwise leave conntrack entries that make masquerade pick other ports).
   * `forward`: the router forwards this TCP and UDP port on its LAN address
   * to the host (a port forward, as set up by hand or by UPnP/NAT-PMP).
   */
  async natHost (name: string, opts: { reachOnly?: string[], mapping?: NatMapping, forward?: number } = {}): Promise<Host & { router: string, wan: string }> {
    const n = ++this.nextNat
    const router = `${this.tag}-r${n}`
    const ns = `${this.tag}-${name}`
    await this.addNs(router)
    await this.addNs(ns)
    const wan = await this.plug(router, 'wan')
    await sh('ip', ['link', 'add', 'lan', 'netns', router, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
    await this.ip(router, 'addr', 'add', `10.77.${n}.1/24`, 'dev', 'lan')
    await this.ip(router, 'link', 'set', 'lan', 'up')
    await this.ip(ns, 'addr', 'add', `10.77.${n}.2/24`, 'dev', 'eth0')
    await this.ip(ns, 'link', 'set', 'eth0', 'up')
    await this.ip(ns, 'route', 'add', 'default', 'via', `10.77.${n}.1`)
    await sh('ip', ['netns', 'exec', router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    await this.nft(router, `
table ip nat {
  chain post { type nat hook postrouting priority 100; oifname "wan" masquerade${opts.mapping === 'random' ? ' random,fully-random' : ''}; }
  chain pre {
    type nat hook prerouting priority -100;
    ${opts.forward !== undefined ? `iifname "wan" meta l4proto { tcp, udp } th dport ${opts.forward} dnat to 10.77.${n}.2` : ''}
  }
}
table inet fw {
  chain input {
    type filter hook input priority 0; policy drop;
    iifname != "wan" accept
    ct state established,related accept
  }
  chain forwarding {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ct status dnat accept
    iifname "lan" oifname "wan" ${opts.reachOnly !== undefined ? `ip daddr { ${opts.reachOnly.join(', ')} } ` : ''}accept
  }
}
`)
    return { ns, addr: `10.77.${n}.2`, router, wan }
  }

  /** Cuts a NAT host's link (router drops everything it forwards, both ways) until `restore`. */
  async cut (router: string): Promise<void> {
    await this.nft(router, 'table inet cut {\n  chain forwarding { type filter hook forward priority -10; policy accept; counter drop; }\n}\n')
  }

  async restore (router: string): Promise<void> { await this.nft(router, 'delete table inet cut\n') }

  async destroy (): Promise<void> {
    for (const ns of [...this.namespaces].reverse()) await sh('ip', ['netns', 'del', ns]).catch(() => {})
  }
}

/** An agent process inside a namespace: the harness's agent behind `ip netns exec`. */
export class NsAgent extends AgentProcess {
  constructor (name: string, readonly host: Host, dataDir: string, configFile: string) {
    super(name, dataDir, configFile, ['ip', 'netns', 'exec', host.ns])
  }

  /**
   * `pushPullMs`: FAST_TOML's push-pull interval replaced (anti-entropy and
   * reconnect rounds). `port`: listen on this port (QUIC and TCP) instead of
   * ephemeral ones, e.g. behind a port forward.
   */
  static async create (root: string, name: string, host: Host, extraToml = '', opts: { pushPullMs?: number, port?: number } = {}): Promise<NsAgent> {
    const dataDir = join(root, name)
    const configFile = join(root, `${name}.toml`)
    const fast = opts.pushPullMs === undefined ? FAST_TOML : FAST_TOML.replace(/push_pull_interval_ms = \d+/, `push_pull_interval_ms = ${opts.pushPullMs}`)
    const port = opts.port ?? 0
    await writeFile(configFile, `name = "${name}"\nlisten = ["/ip4/${host.addr}/udp/${port}/quic-v1", "/ip4/${host.addr}/tcp/${port}"]\n${extraToml}\n${fast}`)
    return new NsAgent(name, host, dataDir, configFile)
  }

  // Namespaced agents start and answer more slowly (relays, NAT): longer defaults.
  override async start (args: string[], timeoutMs = 40_000): Promise<ReadyLine> { return await super.start(args, timeoutMs) }
  override async cli (args: string[], timeoutMs = 10_000): Promise<CliResult> { return await super.cli(args, timeoutMs) }
}

export async function tempRoot (): Promise<{ root: string, cleanup: () => Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'bolt-edge-'))
  return { root, cleanup: async () => { await rm(root, { recursive: true, force: true }) } }
}

/** The seed address of an agent on the given transport. */
export function addrOf (a: NsAgent, transport: 'quic' | 'tcp' = 'quic'): string {
  const addr = a.ready?.node.addrs.find(x => !x.includes('/p2p-circuit') && (transport === 'quic' ? x.includes('/quic-v1') : x.includes('/tcp/')))
  if (addr === undefined) throw new Error(`${a.name} has no ${transport} address`)
  return addr
}
