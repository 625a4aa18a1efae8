// The service catalog in the replicated state: one entry per running
// instance that publishes ports and is not known to be unhealthy or on a
// dead node. The Raft leader keeps it (agent/services/catalog-keeper.ts)
// with batched `catalog.update` commands; every agent answers `services` and
// DNS from its own replica's copy, in memory.
import { z } from 'zod'
import { HealthStateSchema } from '../services/health-spec.js'
import { PortBindingSchema } from '../scheduler/spec.js'

/** Entries set or removed in one `catalog.update` at most. */
export const MAX_CATALOG_CHANGES = 256

export const CatalogEntrySchema = z.strictObject({
  service: z.string().min(1).max(128),
  instance: z.string().min(1).max(128),
  node: z.string().max(128),
  generation: z.number().int().nonnegative(),
  /** The node's advertised host address (IPv4 or IPv6). */
  address: z.string().max(64),
  ports: z.array(PortBindingSchema).max(64),
  health: HealthStateSchema
})
export type CatalogEntry = z.infer<typeof CatalogEntrySchema>

export const CatalogCommandSchema = z.object({
  op: z.literal('catalog.update'),
  req: z.string().max(64),
  set: z.array(CatalogEntrySchema).max(MAX_CATALOG_CHANGES),
  /** Instance names whose entries leave. */
  remove: z.array(z.string().max(128)).max(MAX_CATALOG_CHANGES)
})
export type CatalogCommand = z.infer<typeof CatalogCommandSchema>

export class ServiceCatalog {
  private byInstance = new Map<string, CatalogEntry>()
  private byService = new Map<string, Map<string, CatalogEntry>>()
  /** Bumped on every change, so readers can cache what they derive from it. */
  version = 0

  entries (): CatalogEntry[] { return [...this.byInstance.values()] }
  entry (instance: string): CatalogEntry | undefined { return this.byInstance.get(instance) }
  /** A service's entries, by its name (case-insensitive, as DNS names are). */
  service (name: string): CatalogEntry[] { return [...(this.byService.get(name.toLowerCase())?.values() ?? [])] }
  services (): string[] { return [...this.byService.keys()].sort() }

  apply (cmd: CatalogCommand): { ok: true } {
    for (const name of cmd.remove) this.delete(name)
    for (const e of cmd.set) {
      this.delete(e.instance)
      this.byInstance.set(e.instance, e)
      const key = e.service.toLowerCase()
      let m = this.byService.get(key)
      if (m === undefined) { m = new Map(); this.byService.set(key, m) }
      m.set(e.instance, e)
    }
    this.version++
    return { ok: true }
  }

  private delete (instance: string): void {
    const old = this.byInstance.get(instance)
    if (old === undefined) return
    this.byInstance.delete(instance)
    const key = old.service.toLowerCase()
    const m = this.byService.get(key)
    m?.delete(instance)
    if (m?.size === 0) this.byService.delete(key)
  }

  toSnapshot (): CatalogEntry[] {
    return this.entries().sort((a, b) => a.instance < b.instance ? -1 : 1)
  }

  restore (entries: unknown[]): void {
    this.byInstance = new Map()
    this.byService = new Map()
    const set = entries.flatMap(e => { const r = CatalogEntrySchema.safeParse(e); return r.success ? [r.data] : [] })
    this.apply({ op: 'catalog.update', req: '', set, remove: [] })
  }
}
