// The NodeRuntime's types: what a capsule's state looks like from outside,
// what recovery reports, and what the runtime is built from (its deps).
import type { CapsuleExit } from './capsule-state.js'
import type { CgroupLayout } from './cgroups.js'
import type { RootlessIds } from './bundle/config.js'
import type { BridgeNetwork } from './net/bridge.js'
import type { ContainerEdits } from './gpu/edits.js'
import type { OciRuntimeDriver } from './oci/driver.js'
import type { ImageStore } from './image/store.js'
import type { CapsuleRunSpec } from './spec.js'

export type CapsuleStatus = 'starting' | 'running' | 'exited'

export interface CapsuleState {
  name: string
  image: string
  status: CapsuleStatus
  createdAt: number
  /** Host pid of the capsule's init while it runs. */
  pid: number | null
  /** CDI devices given to it. */
  devices: string[]
  /** False when the node cannot apply cgroup limits (rootless without delegation): resources are then not enforced. */
  limitsEnforced: boolean
  exit: CapsuleExit | null
}

export interface CapsuleHandle {
  name: string
  /** Resolves when the capsule has exited and its output is in the log. */
  exited: Promise<CapsuleExit>
}

export interface RecoveryReport {
  adopted: string[]
  /** Capsules that had exited (or lost their waiter) while the agent was down, now recorded and released. */
  finished: string[]
  /** Runtime containers, cgroups and mounts with no capsule record, removed. */
  orphansRemoved: string[]
  /** Why the capsule networks could not be reconciled (namespaces and forwards may be left until the next start). */
  networkError?: string
}

/** Resolves GPU requests into CDI edits and gives the gaming profile; see gpu/. */
export interface DeviceProvider {
  gpuEdits: (request: number | string[], inUse: ReadonlySet<string>) => Promise<{ devices: string[], edits: ContainerEdits }>
  gamingEdits: (opts: Exclude<CapsuleRunSpec['gaming'], undefined | boolean> | undefined) => Promise<ContainerEdits>
  hostRoot: string
}

export interface NodeRuntimeDeps {
  dataDir: string
  driver: OciRuntimeDriver
  images: ImageStore
  cgroups: CgroupLayout
  rootless?: RootlessIds
  volumeRoots: string[]
  log: { maxBytes: number, maxFiles: number }
  devices: DeviceProvider
  /** Whether `gaming` capsules may get the node's input and sound devices (default: no). */
  allowGaming?: boolean
  /** The node's capsule bridge; absent on a rootless node (bridge capsules are refused there). */
  bridge?: BridgeNetwork
  /** Told of failures that cannot fail a call (RUNTIME_FAILURES): the capsule runs on; the agent logs it. */
  onError?: (what: RuntimeFailure, capsule: string, err: Error) => void
}

/** The failures a runtime reports through onError instead of failing a call, each as the agent logs it. */
export const RUNTIME_FAILURES = {
  log: 'cannot write the capsule\'s log (its output is lost until this is fixed)',
  record: 'cannot write the capsule\'s record',
  release: 'cannot free what a capsule left (recovery tries again at the next start)',
  'keep-logs': 'cannot keep the capsule\'s output for logs --previous',
  spare: 'cannot prepare FIFOs or a rootfs ahead for the next start (it makes its own)'
} as const
export type RuntimeFailure = keyof typeof RUNTIME_FAILURES

/** The steps of a start that `run` tells its caller about, in order (for timing a start). */
export type RunStep = 'bundleReady' | 'launched' | 'started'

export interface RunHooks {
  /** Called as each step is reached: the bundle is written, the OCI runtime is let go, the capsule's init runs. */
  onStep?: (step: RunStep) => void
}
