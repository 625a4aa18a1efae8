// What the S3 endpoint needs of the agent, and nothing more: the S3 part of
// the Raft state (read, with a barrier for read-after-write through any
// agent, and written through Raft), the object store, and who holds what.
import type { Config } from '../config.js'
import type { CommandInput, CommandResult } from '../state/cluster-state.js'
import type { ObjectStore, FetchedObject } from '../../p2p/content/objects.js'
import type { S3Key, S3Table } from './s3-state.js'

import type { S3Collector, S3Log } from './collector.js'
export type { S3Log }

export interface S3Deps {
  config: Config['s3']
  /** This replica's S3 table (read after `barrier` for linearizable reads). */
  table: () => S3Table
  /** Waits until this replica has applied everything committed before now (Raft ReadIndex). */
  barrier: (signal: AbortSignal) => Promise<void>
  write: (cmd: CommandInput, signal: AbortSignal) => Promise<CommandResult>
  /** The access key's record: this replica's first, the leader's when absent here (a key just created elsewhere). */
  accessKey: (accessKey: string, signal: AbortSignal) => Promise<S3Key | undefined>
  objects: ObjectStore
  /** Makes object `id` local, asking `holders` first, then every live member. */
  fetchObject: (id: string, holders: string[], signal: AbortSignal) => Promise<FetchedObject>
  self: string
  /** Where request bodies are written before they are stored (inside the data dir). */
  tmpDir: string
  log: S3Log
  /** Frees deleted objects' blobs; `storing` guards an id between its store and its record's commit. */
  collector?: Pick<S3Collector, 'storing' | 'start' | 'stop'>
}
