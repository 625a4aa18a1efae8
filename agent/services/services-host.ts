// Services on this agent: the leader's catalog keeper, the DNS server
// answering from this replica's catalog, and the API routes for
// `services`, `inspect` and `exec`. Gets the few narrow views it needs.
import type { CommandInput, CommandResult } from '../state/cluster-state.js'
import type { CapsuleRecord } from '../state/capsules.js'
import type { CatalogEntry, ServiceCatalog } from '../state/services.js'
import { CatalogKeeper, nodeAddress, type CatalogNode } from './catalog-keeper.js'
import { DnsServer, hostResolvers, parseHostPort, type Upstream } from './dns-server.js'
import type { Config } from '../config.js'
import type { Logger } from '../logger.js'
import type { MemberView } from '../membership-host.js'
import { ApiError, type ApiServer } from '../api/server.js'
import { freshOrStale } from '../api/fresh-read.js'

export interface ServiceJson {
  name: string
  instances: Array<{ instance: string, node: string, address: string, ports: CatalogEntry['ports'], health: CatalogEntry['health'] }>
}

export interface ServicesHostInit {
  config: Config['dns']
  isLeader: () => boolean
  capsules: () => CapsuleRecord[]
  catalog: () => ServiceCatalog
  members: () => MemberView[]
  write: (cmd: CommandInput, signal?: AbortSignal) => Promise<CommandResult>
  /** Waits until this replica has applied what the leader committed (a linearizable read). */
  readIndex: (signal: AbortSignal) => Promise<void>
  /** Calls `fn` with `ADDRESS:53` on the capsule bridge once the bridge is up (now, if it is); never without a bridge. */
  onBridgeReady?: (fn: (listen: string) => Promise<void>) => Promise<void>
  log: Logger
}

/** The catalog as `services --json` and `GET /v1/services` show it. */
export function servicesJson (catalog: ServiceCatalog): ServiceJson[] {
  return catalog.services().map(name => {
    const entries = catalog.service(name).sort((a, b) => a.instance < b.instance ? -1 : 1)
    return { name: entries[0]?.service ?? name, instances: entries.map(e => ({ instance: e.instance, node: e.node, address: e.address, ports: e.ports, health: e.health })) }
  })
}

export class ServicesHost {
  readonly keeper: CatalogKeeper
  dns: DnsServer | undefined
  /** The same answers on the capsule bridge's address, port 53 (capsules' resolv.conf points there). */
  bridgeDns: DnsServer | undefined
  private bridgeListen: string | undefined
  private stopped = false

  constructor (private readonly o: ServicesHostInit) {
    this.keeper = new CatalogKeeper({
      isLeader: o.isLeader,
      capsules: o.capsules,
      catalog: () => o.catalog().entries(),
      nodes: () => new Map(o.members().map((m): [string, CatalogNode] => [m.id, { state: m.state, address: nodeAddress(m.addrs) }])),
      write: o.write,
      log: o.log
    })
  }

  async start (): Promise<void> {
    this.keeper.start()
    if (!this.o.config.enabled) return
    const upstreams: Upstream[] = this.o.config.upstream !== undefined ? this.o.config.upstream.map(u => parseHostPort(u, 53)) : await hostResolvers()
    const serve = async (listen: string, what: string, hint?: string): Promise<DnsServer | undefined> => {
      // Never forward to ourselves: a loop that would eat every forward slot.
      const own = [this.o.config.listen, listen].map(l => parseHostPort(l, 8600))
      const forwardTo = upstreams.filter(u => !own.some(o => u.host === o.host && u.port === o.port))
      const dns = new DnsServer({
        listen,
        upstreams: forwardTo,
        lookup: (name) => this.o.catalog().service(name),
        version: () => this.o.catalog().version,
        snapshot: () => { const c = this.o.catalog(); return c.services().map(n => [n, c.service(n)]) },
        log: this.o.log,
        ...(hint !== undefined ? { hint } : {})
      })
      try {
        await dns.start()
        this.o.log.info({ dns: dns.url, upstreams: forwardTo.map(u => `${u.host}:${u.port}`) }, `dns: serving NAME.service.bolt ${what}`)
        return dns
      } catch (err) {
        this.o.log.warn({ err: (err as Error).message }, `DNS is off ${what}`)
        return undefined
      }
    }
    this.dns = await serve(this.o.config.listen, 'on this host')
    // Capsules' resolv.conf names the bridge's address: the same answers there, from when the bridge is up.
    await this.o.onBridgeReady?.(async (listen) => {
      if (this.stopped || this.bridgeListen === listen) return
      this.bridgeListen = listen
      const dns = await serve(listen, 'to capsules on the bridge', 'something else on this host serves DNS on every address; bind it to its own, or capsules cannot resolve NAME.service.bolt')
      if (this.stopped) { await dns?.stop(); return }
      const old = this.bridgeDns
      this.bridgeDns = dns
      await old?.stop()
    })
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.keeper.stop()
    await this.dns?.stop()
    await this.bridgeDns?.stop()
  }

  /** Something that may move the catalog happened (an apply, a member's new state). */
  kick (): void { this.keeper.kick() }

  registerRoutes (api: ApiServer): void {
    api.route('GET', '/v1/services', async (req, res) => {
      await freshOrStale(this.o.readIndex, req.signal, res, this.o.log)
      return servicesJson(this.o.catalog())
    })
    api.route('GET', '/v1/services/:name', async (req, res) => {
      await freshOrStale(this.o.readIndex, req.signal, res, this.o.log)
      const s = servicesJson(this.o.catalog()).find(x => x.name === req.params.name)
      if (s === undefined) throw new ApiError(404, `no service named ${req.params.name ?? ''}`)
      return s
    })
  }
}
