// This node's member metadata, built in one place: start-up and every later
// re-announcement (new addresses, a role change) gossip the same resources,
// GPUs, labels and capsule policy, so no update can drop what the scheduler
// places by (a GPU node once lost its GPUs when its addresses changed).
import { availableParallelism, totalmem } from 'node:os'
import { nodeResources } from '../native/resources.js'
import type { MemberMeta, Resources } from '../p2p/membership/meta.js'
import { ROLE_PREF_LABEL } from './raft/autopilot.js'
import type { Config } from './config.js'
import type { Logger } from './logger.js'

export const AGENT_VERSION = '0.1.0'

/** What changes over an agent's life: its name and role (cluster.json) and its dialable addresses. */
export interface MemberIdentity {
  name: string
  role: 'server' | 'client'
  addrs: string[]
}

/** CPUs, memory and GPUs of this node (GPU discovery under `hostRoot`), as gossiped. */
export async function discoverResources (hostRoot = '/'): Promise<Resources> {
  const r = await nodeResources({ root: hostRoot })
  return { cpus: r.cpus, memoryBytes: r.memoryBytes, gpus: r.gpus.map(g => ({ vendor: g.vendor, model: g.model, memoryBytes: g.memoryBytes ?? 0, index: g.index })) }
}

export class LocalMemberMeta {
  private constructor (private readonly config: Config, private readonly resources: Resources) {}

  /**
   * Discovers the node's resources once (GPU discovery may run nvidia-smi);
   * a failed discovery offers CPUs and memory without GPUs, and says so.
   */
  static async discover (config: Config, log: Logger, hostRoot = '/'): Promise<LocalMemberMeta> {
    const resources = await discoverResources(hostRoot).catch((err: Error) => {
      log.warn({ err: err.message }, 'cannot discover this node\'s resources; offering its CPUs and memory without GPUs')
      return { cpus: availableParallelism(), memoryBytes: totalmem(), gpus: [] }
    })
    return new LocalMemberMeta(config, resources)
  }

  /** Builds from known resources (tests, and agents that discovered them elsewhere). */
  static of (config: Config, resources: Resources): LocalMemberMeta {
    return new LocalMemberMeta(config, resources)
  }

  build (id: MemberIdentity): MemberMeta {
    return {
      name: id.name,
      role: id.role,
      addrs: id.addrs,
      resources: this.resources,
      labels: { ...this.config.labels, [ROLE_PREF_LABEL]: this.config.role },
      version: AGENT_VERSION,
      capsules: { allowHostNetwork: this.config.capsules.allow_host_network, allowGaming: this.config.capsules.allow_gaming }
    }
  }
}
