// The capsule spec's text parsers and checks that need no zod: `bolt-agent
// run` loads this one (its start must not pay for zod, see
// test/agent/cli-modules.test.ts); spec.ts re-exports it for everyone else.

/**
 * The smallest memory limit a capsule may ask for. Below a few MiB the
 * kernel refuses the cgroup limit or the runtime cannot even start the
 * capsule, so a smaller number is a typo (`--memory 10`), not a wish.
 */
export const MIN_MEMORY_BYTES = 4 * 1024 * 1024

/** What is wrong with these ports in this network mode, or undefined. */
export function portsProblem (network: 'bridge' | 'host' | 'none', ports: ReadonlyArray<{ host?: number | undefined, container: number, proto: 'tcp' | 'udp' }>): string | undefined {
  if (network === 'none' && ports.length > 0) return 'a capsule with --network none has no network to publish ports from (use bridge)'
  const seen = new Set<string>()
  const containers = new Set<string>()
  for (const p of ports) {
    if (network === 'host' && p.host !== undefined && p.host !== p.container) return `with --network host a capsule listens on the host's ports itself: use -p ${p.container}${p.proto === 'udp' ? '/udp' : ''}, not ${p.host}:${p.container}`
    const host = network === 'host' ? p.container : p.host
    if (host !== undefined) {
      const k = `${host}/${p.proto}`
      if (seen.has(k)) return `host port ${k} is asked for twice`
      seen.add(k)
    }
    const c = `${p.container}/${p.proto}`
    if (containers.has(c)) return `container port ${c} is published twice`
    containers.add(c)
  }
  return undefined
}

/**
 * A capsule's memory limit: a number with a unit (512M, 2G, 1.5GiB), at
 * least MIN_MEMORY_BYTES. A bare number is refused: `--memory 512` meant
 * 512 bytes and left the capsule unlimited, which nobody asks for.
 */
export function parseMemory (text: string): number {
  if (/^\s*\d+(?:\.\d+)?\s*b?\s*$/i.test(text)) throw new Error(`${text}: give a unit, e.g. 512M or 2G (a bare number would be bytes)`)
  const bytes = parseBytes(text)
  if (bytes < MIN_MEMORY_BYTES) throw new Error(`${text}: below the smallest limit a capsule can run with (4M)`)
  return bytes
}

/** Parses sizes like 512M, 2G, 1.5GiB, 1048576. */
export function parseBytes (text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$/i.exec(text.trim())
  if (m === null) throw new Error(`${text}: expected a size like 512M or 2G`)
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[(m[2] ?? '').toLowerCase() as '' | 'k' | 'm' | 'g' | 't']
  return Math.round(Number(m[1]) * mult)
}
