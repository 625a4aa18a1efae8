// Script-style interaction environment in the spirit of etcd-io/raft's
// datadriven tests: commands such as `add-nodes 3`, `campaign 1`,
// `deliver-msgs`, `stabilize` drive a SimCluster step by step and return
// the text to compare with the script's expected output.
import type { ConfChange, Message } from '../types.js'
import { SimCluster } from './cluster.js'
import { fmtEntries, fmtMessage, fmtReady, fmtState } from './format.js'

export interface Command { name: string, args: string[], kv: Map<string, string> }

export function parseCommand (line: string): Command {
  const parts = line.trim().split(/\s+/)
  const name = parts.shift() ?? ''
  const args: string[] = []
  const kv = new Map<string, string>()
  for (const p of parts) {
    const eq = p.indexOf('=')
    if (eq > 0) kv.set(p.slice(0, eq), p.slice(eq + 1).replace(/^\((.*)\)$/, '$1'))
    else args.push(p)
  }
  return { name, args, kv }
}

const bool = (v: string | undefined, d: boolean): boolean => v === undefined ? d : v === 'true'
const list = (v: string | undefined): string[] => v === undefined || v === '' ? [] : v.split(',')

export class InteractionEnv {
  private cluster: SimCluster | null = null
  /** Messages sent and not yet delivered, in send order. */
  private pending: Message[] = []
  private readonly blocked = new Set<string>()
  private nextId = 1

  private get c (): SimCluster {
    if (this.cluster === null) throw new Error('add-nodes first')
    return this.cluster
  }

  handle (line: string): string {
    const cmd = parseCommand(line)
    const out = this.run(cmd)
    return out.join('\n')
  }

  private run (cmd: Command): string[] {
    const id = cmd.args[0] ?? ''
    switch (cmd.name) {
      case 'add-nodes': return this.addNodes(cmd)
      case 'set-randomized-election-timeout': this.core(id).setRandomizedElectionTimeout(Number(cmd.kv.get('timeout') ?? '10')); return []
      case 'campaign': this.core(id).campaign(); return []
      case 'tick': {
        const n = Number(cmd.args[1] ?? '1')
        for (let i = 0; i < n; i++) this.c.tick(id)
        return []
      }
      case 'tick-heartbeat': for (let i = 0; i < this.core(id).opts.heartbeatTicks; i++) this.c.tick(id); return []
      case 'tick-election': for (let i = 0; i < this.core(id).opts.electionTicks; i++) this.c.tick(id); return []
      case 'propose': return this.attempt(() => { this.core(id).propose(new TextEncoder().encode(cmd.args[1] ?? '')) })
      case 'propose-conf-change': return this.attempt(() => { this.core(id).proposeConfChange({ type: cmd.args[1] as ConfChange['type'], node: cmd.args[2] ?? '' }) })
      case 'read-index': return this.attempt(() => { this.core(id).readIndex(cmd.args[1] ?? 'ctx') })
      case 'transfer-leader': return this.attempt(() => { this.core(id).transferLeader(cmd.args[1] ?? '') })
      case 'compact': return [this.c.compact(id) ? `compacted ${id} to ${this.c.node(id).storage.snapshot().meta.index}` : 'nothing to compact']
      case 'process-ready': return cmd.args.flatMap(n => this.processReady(n))
      case 'deliver-msgs': return this.deliver(cmd.args, new Set(list(cmd.kv.get('drop'))))
      case 'stabilize': return this.stabilize(cmd.args)
      case 'isolate': for (const o of this.c.nodes.keys()) if (o !== id) { this.blocked.add(`${id}>${o}`); this.blocked.add(`${o}>${id}`) } return []
      case 'cut': this.blocked.add(`${cmd.args[0] ?? ''}>${cmd.args[1] ?? ''}`); return []
      case 'heal': this.blocked.clear(); return []
      case 'crash': this.c.crash(id); this.pending = this.pending.filter(m => m.from !== id && m.to !== id); return [`crashed ${id}`]
      case 'restart': this.c.restart(id); return [fmtState(this.core(id))]
      case 'raft-state': return [...this.c.nodes.values()].map(n => n.core === null ? `${n.id}: down` : fmtState(n.core))
      case 'status': return [JSON.stringify(this.core(id).status().progress)]
      case 'raft-log': {
        const core = this.core(id)
        const lo = core.log.firstIndex()
        return [`first=${lo} ${fmtEntries(core.log.slice(lo, core.log.lastIndex() + 1, Number.MAX_SAFE_INTEGER) ?? [])}`]
      }
      default: throw new Error(`unknown command ${cmd.name}`)
    }
  }

  private addNodes (cmd: Command): string[] {
    const n = Number(cmd.args[0] ?? '1')
    if (this.cluster === null) {
      const kv = cmd.kv
      this.cluster = new SimCluster(() => 0, {
        preVote: bool(kv.get('prevote'), true),
        checkQuorum: bool(kv.get('checkquorum'), true),
        electionTicks: Number(kv.get('election') ?? '10'),
        heartbeatTicks: Number(kv.get('heartbeat') ?? '1'),
        maxSizePerMsg: Number(kv.get('max-size') ?? String(1024 * 1024)),
        maxInflightMsgs: Number(kv.get('max-inflight') ?? '256'),
        snapshotChunkBytes: Number(kv.get('snapshot-chunk') ?? String(256 * 1024)),
      })
    }
    const voters = cmd.kv.get('voters')
    const out: string[] = []
    for (let i = 0; i < n; i++) {
      const id = String(this.nextId++)
      const node = this.c.addNode(id, voters === undefined ? undefined : list(voters))
      // Apply the bootstrap entries at once, as RaftNode.start() does, so the node knows its configuration.
      this.c.processReady(id, false, m => { this.pending.push(m) })
      if (node.core !== null) out.push(fmtState(node.core))
    }
    return out
  }

  private core (id: string): NonNullable<ReturnType<SimCluster['node']>['core']> {
    const core = this.c.node(id).core
    if (core === null) throw new Error(`node ${id} is down`)
    return core
  }

  private attempt (f: () => void): string[] {
    try {
      f()
      return []
    } catch (err) {
      return [`error: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`]
    }
  }

  private processReady (id: string): string[] {
    // Messages to a node that is down are lost, as on a real network.
    const rd = this.c.processReady(id, false, m => { if (this.c.nodes.get(m.to)?.core != null) this.pending.push(m) })
    if (rd === null) return []
    return [`> ${id} handling Ready`, ...fmtReady(rd).map(l => `  ${l}`)]
  }

  private deliver (to: string[], drop: Set<string>): string[] {
    const out: string[] = []
    const targets = to.length === 0 ? null : new Set(to)
    const now = this.pending.filter(m => targets === null || targets.has(m.to))
    this.pending = this.pending.filter(m => !(targets === null || targets.has(m.to)))
    const byTarget = new Map<string, Message[]>()
    for (const m of now) byTarget.set(m.to, [...(byTarget.get(m.to) ?? []), m])
    for (const [t, ms] of [...byTarget].sort(([a], [b]) => a.localeCompare(b))) {
      out.push(`> ${t} receiving messages`)
      for (const m of ms) {
        if (drop.has(m.to) || this.blocked.has(`${m.from}>${m.to}`) || this.c.node(t).core === null) {
          out.push(`  ${fmtMessage(m)} DROPPED`)
          continue
        }
        out.push(`  ${fmtMessage(m)}`)
        this.c.deliver(m)
      }
    }
    return out
  }

  private stabilize (ids: string[]): string[] {
    const out: string[] = []
    const all = (): string[] => ids.length > 0 ? ids : [...this.c.nodes.keys()].filter(n => this.c.node(n).core !== null)
    for (let round = 0; round < 1000; round++) {
      let progressed = false
      for (const id of all()) {
        const r = this.processReady(id)
        if (r.length > 0) { out.push(...r); progressed = true }
      }
      const targets = new Set(all())
      if (this.pending.some(m => targets.has(m.to))) {
        out.push(...this.deliver(all(), new Set()))
        progressed = true
      }
      if (!progressed) return out
    }
    throw new Error('stabilize did not settle in 1000 rounds')
  }
}
