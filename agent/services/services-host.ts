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
    const own = parseHostPort(this.o.config.listen, 8600)
    const dns = new DnsServer({
      listen: this.o.config.listen,
      // Never forward to ourselves: a loop that would eat every forward slot.
      upstreams: upstreams.filter(u => !(u.host === own.host && u.port === own.port)),
      lookup: (name) => this.o.catalog().service(name),
      version: () => this.o.catalog().version,
      log: this.o.log
    })
    try {
      await dns.start()
      this.dns = dns
      this.o.log.info({ dns: dns.url, upstreams: upstreams.map(u => `${u.host}:${u.port}`) }, 'dns: serving NAME.service.bolt')
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'DNS is off')
    }
  }

  async stop (): Promise<void> {
    this.keeper.stop()
    await this.dns?.stop()
  }

  /** Something that may move the catalog happened (an apply, a member's new state). */
  kick (): void { this.keeper.kick() }

  registerRoutes (api: ApiServer): void {
    api.route('GET', '/v1/services', async (req) => {
      await this.o.readIndex(AbortSignal.any([req.signal, AbortSignal.timeout(5000)])).catch(() => undefined)
      return servicesJson(this.o.catalog())
    })
    api.route('GET', '/v1/services/:name', async (req) => {
      await this.o.readIndex(AbortSignal.any([req.signal, AbortSignal.timeout(5000)])).catch(() => undefined)
      const s = servicesJson(this.o.catalog()).find(x => x.name === req.params.name)
      if (s === undefined) throw new ApiError(404, `no service named ${req.params.name ?? ''}`)
      return s
    })
  }
}
