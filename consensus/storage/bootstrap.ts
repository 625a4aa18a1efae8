// Bootstrapping a fresh log (etcd style): every initial voter is added by a
// conf entry at term 1, already committed, so all bootstrapped members start
// with the same log and a joining member learns the configuration from it.
import type { Entry } from '../types.js'
import { RaftConfigError } from '../errors.js'
import type { LogStorage, PersistRequest } from './types.js'

export function bootstrapRequest (voters: string[]): PersistRequest {
  if (voters.length === 0) throw new RaftConfigError('raft bootstrap: at least one voter is required')
  if (new Set(voters).size !== voters.length) throw new RaftConfigError(`raft bootstrap: duplicate voters in ${voters.join(',')}`)
  const entries: Entry[] = voters.map((node, i) => ({ type: 'conf', term: 1, index: i + 1, change: { type: 'addVoter', node } }))
  return { hardState: { term: 1, vote: '', commit: entries.length }, entries }
}

/** True when nothing was ever written (no entries, no snapshot, no term). */
export function isEmptyStorage (s: LogStorage): boolean {
  return s.lastIndex() === 0 && s.snapshot().meta.index === 0 && s.initialState().hardState.term === 0
}

/** Writes the bootstrap entries if the storage is empty; returns whether it did. */
export async function bootstrapStorage (s: LogStorage, voters: string[]): Promise<boolean> {
  if (!isEmptyStorage(s)) return false
  await s.save(bootstrapRequest(voters))
  return true
}
