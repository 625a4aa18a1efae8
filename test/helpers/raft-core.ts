// A RaftCore over MemoryStorage for the consensus unit tests: booted with
// its voters, and `drain` to persist and collect what each Ready asks for.
import { RaftCore, MemoryStorage, bootstrapRequest, type Message, type Ready } from '../../consensus/index.js'

export function core (id: string, voters: string[], opts: Partial<ConstructorParameters<typeof RaftCore>[0]> & { random: () => number }): { c: RaftCore, s: MemoryStorage } {
  const s = new MemoryStorage()
  s.saveSync(bootstrapRequest(voters))
  const c = new RaftCore({ id, storage: s, ...opts })
  drain(c, s)
  return { c, s }
}

/** Saves each Ready's entries, hard state and snapshot, advances, and returns its messages. */
export function drain (c: RaftCore, s: MemoryStorage): Message[] {
  const out: Message[] = []
  for (let rd: Ready | null = c.ready(); rd !== null; rd = c.ready()) {
    s.saveSync({ entries: rd.entries, ...(rd.hardState === undefined ? {} : { hardState: rd.hardState }), ...(rd.snapshot === undefined ? {} : { snapshot: rd.snapshot }) })
    out.push(...rd.messages)
    c.advance(rd)
  }
  return out
}
