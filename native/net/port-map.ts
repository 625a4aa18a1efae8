// Reading the published-port maps that `nft -j list map` prints: which
// capsule address each host port is forwarded to.

/** The address `nft -j list map` output forwards `port` to, if any. */
export function mapTarget (json: string, port: number): string | undefined {
  return mapTargets(json).get(port)
}

/** Every forward in `nft -j list map` output: host port → capsule address. */
export function mapTargets (json: string): Map<number, string> {
  const out = new Map<number, string>()
  let doc: unknown
  try { doc = JSON.parse(json) } catch { return out } // nft printed no JSON: no forward known
  const items = (doc as { nftables?: Array<{ map?: { elem?: unknown[] } }> }).nftables ?? []
  for (const item of items) {
    for (const e of item.map?.elem ?? []) {
      if (!Array.isArray(e) || typeof e[0] !== 'number' || out.has(e[0])) continue
      const concat = (e[1] as { concat?: unknown[] } | undefined)?.concat
      out.set(e[0], typeof concat?.[0] === 'string' ? concat[0] : JSON.stringify(e[1]))
    }
  }
  return out
}
