// The cluster side of capsule networking: which subnet this node's bridge
// uses (configured, or an "auto" /24 no member has announced, kept across
// restarts), whether it overlaps a member's, and which address of a node
// people reach its published ports on.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { formatSubnet, overlaps, parseSubnet, type Subnet } from '../native/index.js'
import { writeAtomic } from './cluster-file.js'
import type { Config } from './config.js'
import type { MemberView } from './membership-host.js'

export const NETWORK_FILE = 'network.json'
/** "auto" subnets are /24s of this /16. */
export const AUTO_POOL = '10.88.0.0/16'

export class SubnetConfigError extends Error {
  override name = 'SubnetConfigError'
}

function tryParse (text: string | undefined): Subnet | undefined {
  if (text === undefined) return undefined
  try { return parseSubnet(text) } catch { return undefined } // a member's unparsable subnet is treated as none: it cannot collide with ours
}

/**
 * This node's capsule subnet: the configured one, else the one chosen before
 * (DATA/network.json), else the first /24 of AUTO_POOL, starting from one
 * drawn from the peer id, that no known member announces.
 */
export async function chooseSubnet (config: Config['network'], dataDir: string, self: string, members: readonly MemberView[]): Promise<string> {
  if (config.subnet !== 'auto') {
    try {
      return formatSubnet(parseSubnet(config.subnet))
    } catch (err) {
      throw new SubnetConfigError(`config error: network.subnet: ${(err as Error).message}`)
    }
  }
  const saved = await readFile(join(dataDir, NETWORK_FILE), 'utf8').then(t => (JSON.parse(t) as { subnet?: string }).subnet, () => undefined) // none yet (first start) or unreadable: choose one afresh below
  const kept = tryParse(saved)
  if (kept !== undefined && kept.prefix === 24) return formatSubnet(kept)
  const taken = members.filter(m => m.id !== self).map(m => tryParse(m.network?.subnet)).filter((s): s is Subnet => s !== undefined)
  const pool = parseSubnet(AUTO_POOL)
  const start = createHash('sha256').update(self).digest()[0] as number
  let pick: Subnet | undefined
  for (let i = 0; i < 256 && pick === undefined; i++) {
    const s: Subnet = { base: pool.base + (((start + i) % 256) << 8), prefix: 24 }
    if (!taken.some(t => overlaps(t, s))) pick = s
  }
  const chosen = formatSubnet(pick ?? { base: pool.base + (start << 8), prefix: 24 })
  await writeAtomic(join(dataDir, NETWORK_FILE), JSON.stringify({ subnet: chosen }) + '\n')
  return chosen
}

/** Why this node must not start bridge capsules: its subnet overlaps a live member's. */
export function subnetConflict (own: string, self: string, members: readonly MemberView[]): string | undefined {
  const mine = tryParse(own)
  if (mine === undefined) return undefined
  for (const m of members) {
    if (m.id === self || m.state === 'dead' || m.state === 'left') continue
    const theirs = tryParse(m.network?.subnet)
    if (theirs !== undefined && overlaps(mine, theirs)) {
      return `this node's capsule subnet ${own} overlaps ${m.name}'s (${m.network?.subnet ?? ''}): set [network] subnet to a free one on one of them and restart it`
    }
  }
  return undefined
}

