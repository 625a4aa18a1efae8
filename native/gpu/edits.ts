// CDI container edits (env, device nodes, mounts, hooks, extra gids) and
// applying them to an OCI runtime config, the way CDI-aware runtimes do:
// every device node also gets a cgroup device rule allowing it.
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import type { OciHook, OciSpec } from '../bundle/oci-spec.js'
import { GpuUnavailableError } from '../errors.js'

export const DeviceNodeSchema = z.object({
  path: z.string(),
  hostPath: z.string().optional(),
  type: z.enum(['c', 'b', 'u', 'p']).optional(),
  major: z.number().int().optional(),
  minor: z.number().int().optional(),
  fileMode: z.number().int().optional(),
  permissions: z.string().optional(),
  uid: z.number().int().optional(),
  gid: z.number().int().optional()
})

export const CdiMountSchema = z.object({
  hostPath: z.string(),
  containerPath: z.string(),
  type: z.string().optional(),
  options: z.array(z.string()).optional()
})

export const CdiHookSchema = z.object({
  hookName: z.enum(['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop']),
  path: z.string(),
  args: z.array(z.string()).optional(),
  env: z.array(z.string()).optional(),
  timeout: z.number().int().optional()
})

export const ContainerEditsSchema = z.object({
  env: z.array(z.string()).optional(),
  deviceNodes: z.array(DeviceNodeSchema).optional(),
  hooks: z.array(CdiHookSchema).optional(),
  mounts: z.array(CdiMountSchema).optional(),
  additionalGids: z.array(z.number().int()).optional()
})
export type ContainerEdits = z.infer<typeof ContainerEditsSchema>
export type CdiDeviceNode = z.infer<typeof DeviceNodeSchema>

/** Linux dev_t → major/minor (glibc's gnu_dev_major/minor). */
export function splitRdev (rdev: number): { major: number, minor: number } {
  const hi = Math.floor(rdev / 2 ** 32)
  const lo = rdev >>> 0
  return { major: ((lo >>> 8) & 0xfff) | (hi & ~0xfff), minor: (lo & 0xff) | ((lo >>> 12) & ~0xff) }
}

export function mergeEdits (...all: ContainerEdits[]): ContainerEdits {
  const out: Required<ContainerEdits> = { env: [], deviceNodes: [], hooks: [], mounts: [], additionalGids: [] }
  for (const e of all) {
    out.env.push(...(e.env ?? []))
    for (const d of e.deviceNodes ?? []) if (!out.deviceNodes.some(x => x.path === d.path)) out.deviceNodes.push(d)
    out.hooks.push(...(e.hooks ?? []))
    for (const m of e.mounts ?? []) if (!out.mounts.some(x => x.containerPath === m.containerPath)) out.mounts.push(m)
    for (const g of e.additionalGids ?? []) if (!out.additionalGids.includes(g)) out.additionalGids.push(g)
  }
  return out
}

/**
 * Applies `edits` to `config` in place. Device nodes without major/minor are
 * looked up on the host (under `hostRoot`); a missing one is an error, since
 * the capsule asked for a device this node does not have.
 */
export async function applyContainerEdits (config: OciSpec, edits: ContainerEdits, hostRoot = '/'): Promise<void> {
  const env = new Map(config.process.env.map(kv => [kv.slice(0, kv.indexOf('=')), kv]))
  for (const kv of edits.env ?? []) env.set(kv.slice(0, kv.indexOf('=')), kv)
  config.process.env = [...env.values()]

  for (const d of edits.deviceNodes ?? []) {
    let { major, minor, type } = d
    if (major === undefined || minor === undefined || type === undefined) {
      const host = join(hostRoot, d.hostPath ?? d.path)
      const st = await stat(host).catch(() => undefined) // missing or unreadable: refused just below, naming the path
      if (st === undefined || !(st.isCharacterDevice() || st.isBlockDevice())) {
        throw new GpuUnavailableError(`device ${d.hostPath ?? d.path} is not a device node on this host (looked at ${host})`)
      }
      const mm = splitRdev(st.rdev)
      major ??= mm.major
      minor ??= mm.minor
      type ??= st.isBlockDevice() ? 'b' : 'c'
    }
    config.linux.devices ??= []
    config.linux.devices = config.linux.devices.filter(x => x.path !== d.path)
    config.linux.devices.push({ path: d.path, type, major, minor, fileMode: d.fileMode ?? 0o666, uid: d.uid ?? 0, gid: d.gid ?? 0 })
    if (config.linux.resources !== undefined) {
      config.linux.resources.devices ??= []
      config.linux.resources.devices.push({ allow: true, type: type === 'b' ? 'b' : 'c', major, minor, access: d.permissions ?? 'rwm' })
    }
  }
  for (const m of edits.mounts ?? []) {
    config.mounts = config.mounts.filter(x => x.destination !== m.containerPath)
    config.mounts.push({ destination: m.containerPath, source: m.hostPath, type: m.type ?? 'bind', options: m.options ?? ['rbind', 'rprivate', 'nosuid', 'nodev'] })
  }
  for (const h of edits.hooks ?? []) {
    config.hooks ??= {}
    const hook: OciHook = { path: h.path, ...(h.args !== undefined ? { args: h.args } : {}), ...(h.env !== undefined ? { env: h.env } : {}), ...(h.timeout !== undefined ? { timeout: h.timeout } : {}) }
    ;(config.hooks[h.hookName] ??= []).push(hook)
  }
  if ((edits.additionalGids ?? []).length > 0) {
    config.process.user.additionalGids = [...new Set([...(config.process.user.additionalGids ?? []), ...(edits.additionalGids ?? [])])]
  }
}
