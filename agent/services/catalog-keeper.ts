// The leader's side of the service catalog: from the committed capsules and
// the gossiped membership it computes which instances should be entries
// (running, ports published, not unhealthy, node not dead or gone) and
// writes the difference as `catalog.update` commands — one per round with a
// change, bounded, none while nothing changes. A new leader resumes from the
// committed catalog, so nothing depends on the old leader's memory.
import type { CommandInput, CommandResult } from '../state/cluster-state.js'
import type { CapsuleRecord } from '../state/capsules.js'
import { MAX_CATALOG_CHANGES, type CatalogEntry } from '../state/services.js'
import type { Logger } from '../logger.js'

export const CATALOG_INTERVAL_MS = 250
/** catalog.update commands one round writes at most (then the next round goes on). */
export const MAX_WRITES_PER_ROUND = 16

export interface CatalogNode {
  state: 'alive' | 'suspect' | 'dead' | 'left'
  /** The node's advertised host address, or null if it has none usable. */
  address: string | null
}

/** The entries the catalog should hold now. Pure: table-tested. */
export function desiredCatalog (capsules: CapsuleRecord[], nodes: ReadonlyMap<string, CatalogNode>): CatalogEntry[] {
  const out: CatalogEntry[] = []
  for (const c of capsules) {
    if (c.desired !== 'run') continue
    for (const i of c.instances) {
      const ports = i.ports ?? []
      if (i.node === null || i.state !== 'running' || ports.length === 0 || i.health === 'unhealthy') continue
      const n = nodes.get(i.node)
      // Suspect is still served (it may only be slow); dead, left or unknown is not.
      if (n === undefined || n.address === null || n.state === 'dead' || n.state === 'left') continue
      out.push({ service: c.spec.service ?? c.spec.name, instance: i.name, node: i.node, generation: i.generation, address: n.address, ports, health: i.health ?? 'healthy' })
    }
  }
  return out
}

/** What to set and remove to turn `current` into `desired`, at most `max` of each. */
export function catalogDiff (current: CatalogEntry[], desired: CatalogEntry[], max = MAX_CATALOG_CHANGES): { set: CatalogEntry[], remove: string[] } {
  const want = new Map(desired.map(e => [e.instance, e]))
  const have = new Map(current.map(e => [e.instance, e]))
  const set: CatalogEntry[] = []
  const remove: string[] = []
  for (const [name, e] of want) {
    if (set.length >= max) break
    const h = have.get(name)
    if (h === undefined || !sameEntry(h, e)) set.push(e)
  }
  for (const name of have.keys()) {
    if (remove.length >= max) break
    if (!want.has(name)) remove.push(name)
  }
  return { set, remove }
}

function sameEntry (a: CatalogEntry, b: CatalogEntry): boolean {
  return a.service === b.service && a.node === b.node && a.generation === b.generation && a.address === b.address && a.health === b.health &&
    a.ports.length === b.ports.length && a.ports.every((p, i) => p.host === b.ports[i]?.host && p.container === b.ports[i]?.container && p.proto === b.ports[i]?.proto)
}

/** A node's host address from its advertised multiaddrs: a routable IPv4 first, then any IP. */
export function nodeAddress (addrs: string[]): string | null {
  const ips = addrs.flatMap(a => {
    const m = /^\/(ip4|ip6)\/([^/]+)/.exec(a)
    return m !== null && m[2] !== '0.0.0.0' && m[2] !== '::' ? [{ v: m[1], ip: m[2] as string }] : []
  })
  const loop = (ip: string): boolean => ip.startsWith('127.') || ip === '::1'
  return ips.find(x => x.v === 'ip4' && !loop(x.ip))?.ip ?? ips.find(x => !loop(x.ip))?.ip ?? ips[0]?.ip ?? null
}

export interface CatalogKeeperInit {
  isLeader: () => boolean
  capsules: () => CapsuleRecord[]
  catalog: () => CatalogEntry[]
  nodes: () => ReadonlyMap<string, CatalogNode>
  write: (cmd: CommandInput, signal?: AbortSignal) => Promise<CommandResult>
  log: Logger
}

export class CatalogKeeper {
  private timer: NodeJS.Timeout | undefined
  private busy = false
  private readonly ac = new AbortController()

  constructor (private readonly o: CatalogKeeperInit) {}

  start (): void {
    this.timer = setInterval(() => { void this.round() }, CATALOG_INTERVAL_MS)
    this.timer.unref()
  }

  stop (): void {
    this.ac.abort()
    if (this.timer !== undefined) clearInterval(this.timer)
  }

  /** A change that may move the catalog (an apply, a member's state): a round soon. */
  kick (): void {
    if (this.ac.signal.aborted || !this.o.isLeader()) return
    setImmediate(() => { void this.round() })
  }

  async round (): Promise<void> {
    if (this.ac.signal.aborted || !this.o.isLeader()) return
    if (this.busy) return
    this.busy = true
    try {
      // A write returns once applied here, so the next diff sees it; bounded rounds per call.
      for (let n = 0; n < MAX_WRITES_PER_ROUND && !this.ac.signal.aborted && this.o.isLeader(); n++) {
        const { set, remove } = catalogDiff(this.o.catalog(), desiredCatalog(this.o.capsules(), this.o.nodes()))
        if (set.length === 0 && remove.length === 0) break
        const r = await this.o.write({ op: 'catalog.update', set, remove }, this.ac.signal)
        if (!r.ok) break
      }
    } catch (err) {
      this.o.log.debug({ err: (err as Error).message }, 'catalog round failed; retrying')
    } finally {
      this.busy = false
    }
  }
}
