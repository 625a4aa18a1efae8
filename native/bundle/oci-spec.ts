// The subset of the OCI runtime spec (config.json) this runtime writes, typed.
// Field names follow opencontainers/runtime-spec config.md and config-linux.md.

export interface OciMount {
  destination: string
  type?: string
  source?: string
  options?: string[]
}

export interface OciDevice {
  path: string
  type: 'c' | 'b' | 'u' | 'p'
  major?: number
  minor?: number
  fileMode?: number
  uid?: number
  gid?: number
}

export interface OciDeviceCgroup {
  allow: boolean
  type?: 'a' | 'c' | 'b'
  major?: number
  minor?: number
  access?: string
}

export interface OciHook {
  path: string
  args?: string[]
  env?: string[]
  timeout?: number
}

export interface OciIdMapping {
  containerID: number
  hostID: number
  size: number
}

export interface OciSpec {
  ociVersion: string
  process: {
    terminal: boolean
    user: { uid: number, gid: number, additionalGids?: number[] }
    args: string[]
    env: string[]
    cwd: string
    capabilities: { bounding: string[], effective: string[], permitted: string[], inheritable?: string[], ambient?: string[] }
    rlimits: Array<{ type: string, hard: number, soft: number }>
    noNewPrivileges: boolean
    oomScoreAdj?: number
  }
  root: { path: string, readonly: boolean }
  hostname: string
  mounts: OciMount[]
  hooks?: { prestart?: OciHook[], createRuntime?: OciHook[], createContainer?: OciHook[], startContainer?: OciHook[], poststart?: OciHook[], poststop?: OciHook[] }
  annotations?: Record<string, string>
  linux: {
    namespaces: Array<{ type: string, path?: string }>
    uidMappings?: OciIdMapping[]
    gidMappings?: OciIdMapping[]
    devices?: OciDevice[]
    cgroupsPath?: string
    resources?: {
      devices?: OciDeviceCgroup[]
      memory?: { limit?: number, swap?: number }
      cpu?: { shares?: number, quota?: number, period?: number }
      pids?: { limit: number }
    }
    seccomp?: unknown
    maskedPaths?: string[]
    readonlyPaths?: string[]
  }
}
