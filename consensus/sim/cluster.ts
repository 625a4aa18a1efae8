// A cluster of RaftCores in one process over a simulated network. Both the
// randomized simulator and the script-style interaction tests drive it: it
// owns the nodes (core + MemoryStorage + a toy state machine), the messages
// in flight, crashes/restarts, and runs the SafetyChecker after every step.
import { RaftCore } from '../core/raft-core.js'
import type { RaftCoreOptions } from '../core/config.js'
import { MemoryStorage } from '../storage/memory.js'
import { bootstrapRequest } from '../storage/bootstrap.js'
import type { Entry, Message, Ready } from '../types.js'
import { SafetyChecker, fingerprint } from './checker.js'

/** The replicated toy state machine: applied payloads and a hash of every applied entry. */
export class SimStateMachine {
  index = 0
  hash = 0x811c9dc5
  payloads: string[] = []

  apply (e: Entry): void {
    const fp = fingerprint(e)
    for (let i = 0; i < fp.length; i++) this.hash = Math.imul(this.hash ^ fp.charCodeAt(i), 16777619) >>> 0
    this.hash = Math.imul(this.hash ^ e.index, 16777619) >>> 0
    if (e.type === 'normal' && e.data.length > 0) this.payloads.push(fp.slice(2))
    this.index = e.index
  }

  encode (): Uint8Array {
    return new TextEncoder().encode(JSON.stringify({ index: this.index, hash: this.hash, payloads: this.payloads }))
  }

  static decode (data: Uint8Array): SimStateMachine {
    const sm = new SimStateMachine()
    if (data.length === 0) return sm
    const o = JSON.parse(new TextDecoder().decode(data)) as { index: number, hash: number, payloads: string[] }
    sm.index = o.index
    sm.hash = o.hash
    sm.payloads = o.payloads
    return sm
  }

  fingerprint (): string { return `${this.hash}/${this.payloads.length}` }
}

export interface SimNode {
  id: string
  storage: MemoryStorage
  core: RaftCore | null
  sm: SimStateMachine
  removed: boolean
}

export interface InFlight { msg: Message, at: number }

export type CoreOverrides = Omit<RaftCoreOptions, 'id' | 'storage' | 'random'>

export interface ClusterHooks {
  /** Called for every applied normal entry (after the checker). */
  onApply?: (node: SimNode, e: Entry) => void
  onConfApplied?: (node: SimNode, e: Entry) => void
  onReadState?: (node: SimNode, index: number, context: string) => void
}

export class SimCluster {
  readonly nodes = new Map<string, SimNode>()
  readonly checker = new SafetyChecker()
  inFlight: InFlight[] = []
  now = 0
  hooks: ClusterHooks = {}

  constructor (readonly random: () => number, readonly coreOptions: CoreOverrides = {}) {}

  /** Adds a node; with `voters` it is bootstrapped with that configuration, otherwise it joins empty. */
  addNode (id: string, voters?: string[]): SimNode {
    const storage = new MemoryStorage()
    if (voters !== undefined) storage.saveSync(bootstrapRequest(voters))
    const n: SimNode = { id, storage, core: null, sm: new SimStateMachine(), removed: false }
    this.nodes.set(id, n)
    this.start(n)
    return n
  }

  private start (n: SimNode): void {
    n.sm = SimStateMachine.decode(n.storage.snapshot().data)
    n.core = new RaftCore({ ...this.coreOptions, id: n.id, storage: n.storage, random: this.random })
  }

  node (id: string): SimNode {
    const n = this.nodes.get(id)
    if (n === undefined) throw new Error(`sim: no node ${id}`)
    return n
  }

  live (): SimNode[] {
    return [...this.nodes.values()].filter(n => n.core !== null)
  }

  /** Loses everything not persisted: the core, its unsent messages and the state machine. */
  crash (id: string): void {
    this.node(id).core = null
  }

  restart (id: string): void {
    const n = this.node(id)
    if (n.core !== null || n.removed) return
    this.start(n)
  }

  leader (): SimNode | undefined {
    let best: SimNode | undefined
    for (const n of this.live()) {
      if (n.core?.role === 'leader' && (best?.core === undefined || best.core === null || n.core.term > best.core.term)) best = n
    }
    return best
  }

  /** Hands the next Ready of `id` through persist, send, apply, advance. Returns false if there was none. */
  processReady (id: string, crashBeforeSend = false, send: (m: Message) => void = m => { this.inFlight.push({ msg: m, at: this.now + 1 }) }): Ready | null {
    const n = this.node(id)
    const core = n.core
    if (core === null) return null
    const rd = core.ready()
    if (rd === null) return null
    const first = rd.entries[0]
    if (first !== undefined) {
      const prevTerm = first.index - 1 === (rd.snapshot?.meta.index ?? -1) ? rd.snapshot?.meta.term ?? 0 : (core.log.term(first.index - 1) ?? 0)
      this.checker.checkWrite(id, rd.entries, prevTerm)
    }
    const req: Parameters<MemoryStorage['saveSync']>[0] = { entries: rd.entries }
    if (rd.hardState !== undefined) req.hardState = rd.hardState
    if (rd.snapshot !== undefined) req.snapshot = rd.snapshot
    n.storage.saveSync(req)
    if (crashBeforeSend) {
      this.crash(id)
      return rd
    }
    for (const m of rd.messages) send(m)
    if (rd.snapshot !== undefined) {
      n.sm = SimStateMachine.decode(rd.snapshot.data)
      this.checker.checkState(id, n.sm.index, n.sm.fingerprint())
    }
    this.checker.checkCommitted(id, rd.committedEntries)
    for (const e of rd.committedEntries) {
      if (e.index <= n.sm.index) continue
      n.sm.apply(e)
      this.checker.checkState(id, e.index, n.sm.fingerprint())
      if (e.type === 'conf') this.hooks.onConfApplied?.(n, e)
      else this.hooks.onApply?.(n, e)
    }
    for (const rs of rd.readStates) this.hooks.onReadState?.(n, rs.index, rs.context)
    core.advance(rd)
    this.checker.checkLeader(core)
    return rd
  }

  /** Delivers one message (dropped if the target is down or gone). */
  deliver (m: Message): void {
    const n = this.nodes.get(m.to)
    if (n?.core === null || n?.core === undefined) return
    n.core.step(m)
    this.checker.checkLeader(n.core)
  }

  tick (id: string): void {
    const core = this.node(id).core
    if (core === null) return
    core.tick()
    this.checker.checkLeader(core)
  }

  /** Takes a snapshot of the state machine at its applied index and compacts the log. */
  compact (id: string, keepEntries = 0): boolean {
    const n = this.node(id)
    const core = n.core
    if (core === null || n.sm.index <= n.storage.snapshot().meta.index || n.sm.index !== core.log.applied) return false
    const snap = core.compact(n.sm.index, n.sm.encode())
    n.storage.compactSync(snap, keepEntries)
    return true
  }
}
