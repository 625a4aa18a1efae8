// Container Device Interface: reading the node's CDI specs (/etc/cdi, then
// /var/run/cdi, which wins on conflicts), generating one per GPU vendor when
// none exists, and resolving a capsule's request (N GPUs, or named devices)
// into the container edits to apply.
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createRequire } from 'node:module'
import { z } from 'zod'
import { mkdirWithMode, replaceFile } from '../file-modes.js'
import { CdiSpecError, GpuUnavailableError } from '../errors.js'
import type { GpuInfo, GpuVendor } from './discover.js'
import { ContainerEditsSchema, mergeEdits, type CdiDeviceNode, type ContainerEdits } from './edits.js'

export const CDI_VERSION = '0.6.0'
export const DEFAULT_CDI_DIRS = ['/etc/cdi', '/var/run/cdi']
/** Where generated specs go: the transient dir, so a driver upgrade and reboot regenerate them. */
export const GENERATED_CDI_DIR = '/var/run/cdi'
export const MAX_CDI_SPEC_BYTES = 4 * 1024 * 1024

export const CdiSpecSchema = z.object({
  cdiVersion: z.string(),
  kind: z.string().regex(/^[a-z0-9.-]+\/[a-zA-Z0-9_.-]+$/, 'vendor.com/class'),
  annotations: z.record(z.string(), z.string()).optional(),
  devices: z.array(z.object({
    name: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.:-]*$/),
    annotations: z.record(z.string(), z.string()).optional(),
    containerEdits: ContainerEditsSchema
  })).max(1024),
  containerEdits: ContainerEditsSchema.optional()
})
export type CdiSpec = z.infer<typeof CdiSpecSchema>

export const GPU_KINDS: Record<GpuVendor, string> = { nvidia: 'nvidia.com/gpu', amd: 'amd.com/gpu', intel: 'intel.com/gpu' }

export interface LoadedCdiSpec {
  path: string
  spec: CdiSpec
}

// The YAML parser is loaded on first use (a node without CDI specs never
// needs it); `require` keeps parseCdiSpec synchronous.
const requireLazily = createRequire(import.meta.url)
function parseYaml (text: string): unknown {
  return (requireLazily('yaml') as typeof import('yaml')).parse(text)
}

export function parseCdiSpec (text: string, path: string): CdiSpec {
  let value: unknown
  try {
    value = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text)
  } catch (err) {
    throw new CdiSpecError(`CDI spec ${path} is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`)
  }
  const r = CdiSpecSchema.safeParse(value)
  if (!r.success) throw new CdiSpecError(`CDI spec ${path} is invalid: ${r.error.issues.map(i => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
  return r.data
}

/** Reads every *.json / *.yaml spec in `dirs` (under `root`); later dirs override earlier ones for the same kind+device. */
export async function readCdiSpecs (opts: { root?: string, dirs?: string[], onError?: (err: Error) => void } = {}): Promise<LoadedCdiSpec[]> {
  const root = opts.root ?? '/'
  const out: LoadedCdiSpec[] = []
  for (const d of opts.dirs ?? DEFAULT_CDI_DIRS) {
    const dir = join(root, d)
    const files = (await readdir(dir).catch(() => [] as string[])).filter(f => /\.(json|ya?ml)$/.test(f)).sort() // a CDI dir that does not exist holds no spec
    for (const f of files) {
      const path = join(dir, f)
      try {
        const text = await readFile(path, 'utf8')
        if (Buffer.byteLength(text) > MAX_CDI_SPEC_BYTES) throw new CdiSpecError(`CDI spec ${path} is larger than ${MAX_CDI_SPEC_BYTES} bytes`)
        out.push({ path, spec: parseCdiSpec(text, path) })
      } catch (err) {
        // One bad spec must not hide the others; the caller decides how loud to be.
        if (opts.onError !== undefined) opts.onError(err as Error)
        else throw err
      }
    }
  }
  return out
}

async function devicesMajors (root: string): Promise<Map<string, number>> {
  const text = await readFile(join(root, 'proc/devices'), 'utf8').catch(() => '') // no /proc/devices: no major numbers known, none used
  const m = new Map<string, number>()
  let chars = false
  for (const line of text.split('\n')) {
    if (line.startsWith('Character devices')) { chars = true; continue }
    if (line.startsWith('Block devices')) { chars = false; continue }
    const f = line.trim().split(/\s+/)
    if (chars && f.length === 2) m.set(f[1] as string, Number(f[0]))
  }
  return m
}

const DRM_MAJOR = 226
const NVIDIA_MAJOR = 195
const NVIDIA_LIBS = /^(libcuda|libnvidia-ml|libnvidia-ptxjitcompiler|libnvidia-nvvm|libnvidia-gpucomp|libnvidia-allocator|libnvidia-cfg|libnvidia-opencl|libnvidia-glcore|libnvidia-tls|libnvidia-glsi|libnvidia-eglcore|libGLX_nvidia|libEGL_nvidia|libGLESv2_nvidia|libnvidia-vulkan-producer)\.so\.[0-9.]+$/
const LIB_DIRS = ['usr/lib/x86_64-linux-gnu', 'usr/lib/aarch64-linux-gnu', 'usr/lib64', 'usr/lib']

function drmNodes (g: GpuInfo): CdiDeviceNode[] {
  const nodes: CdiDeviceNode[] = []
  if (g.drmCard !== null) nodes.push({ path: g.drmCard, type: 'c', major: DRM_MAJOR, minor: Number(/card(\d+)$/.exec(g.drmCard)?.[1] ?? 0) })
  if (g.renderNode !== null) nodes.push({ path: g.renderNode, type: 'c', major: DRM_MAJOR, minor: Number(/renderD(\d+)$/.exec(g.renderNode)?.[1] ?? 128) })
  return nodes
}

/** Builds one CDI spec per vendor present in `gpus` (devices gpu0…gpuN-1 and all). */
export async function generateCdiSpecs (gpus: GpuInfo[], opts: { root?: string } = {}): Promise<CdiSpec[]> {
  const root = opts.root ?? '/'
  const majors = await devicesMajors(root)
  const specs: CdiSpec[] = []
  for (const vendor of ['nvidia', 'amd', 'intel'] as const) {
    const mine = gpus.filter(g => g.vendor === vendor).sort((a, b) => a.index - b.index)
    if (mine.length === 0) continue
    const devices = mine.map(g => {
      const nodes = drmNodes(g)
      if (vendor === 'nvidia') nodes.unshift({ path: `/dev/nvidia${g.minor ?? g.index}`, type: 'c', major: NVIDIA_MAJOR, minor: g.minor ?? g.index })
      return {
        name: `gpu${g.index}`,
        ...(g.uuid !== null ? { annotations: { uuid: g.uuid } } : {}),
        containerEdits: { deviceNodes: nodes } as ContainerEdits
      }
    })
    const common: ContainerEdits = { env: [], deviceNodes: [], mounts: [], hooks: [] }
    if (vendor === 'nvidia') {
      common.env = ['NVIDIA_VISIBLE_DEVICES=void']
      common.deviceNodes = [
        { path: '/dev/nvidiactl', type: 'c', major: NVIDIA_MAJOR, minor: 255 },
        { path: '/dev/nvidia-modeset', type: 'c', major: NVIDIA_MAJOR, minor: 254 }
      ]
      const uvm = majors.get('nvidia-uvm')
      if (uvm !== undefined) common.deviceNodes.push({ path: '/dev/nvidia-uvm', type: 'c', major: uvm, minor: 0 }, { path: '/dev/nvidia-uvm-tools', type: 'c', major: uvm, minor: 1 })
      for (const dir of LIB_DIRS) {
        // a library dir this distro lacks: try the next
        const libs = (await readdir(join(root, dir)).catch(() => [] as string[])).filter(f => NVIDIA_LIBS.test(f)).sort()
        for (const lib of libs) common.mounts?.push({ hostPath: `/${dir}/${lib}`, containerPath: `/${dir}/${lib}`, options: ['ro', 'nosuid', 'nodev', 'bind'] })
        if (libs.length > 0) break
      }
      for (const bin of ['nvidia-smi', 'nvidia-debugdump', 'nvidia-persistenced']) {
        if (await readFile(join(root, 'usr/bin', bin)).then(() => true, () => false)) common.mounts?.push({ hostPath: `/usr/bin/${bin}`, containerPath: `/usr/bin/${bin}`, options: ['ro', 'nosuid', 'nodev', 'bind'] })
      }
    } else if (vendor === 'amd') {
      const kfd = majors.get('kfd')
      if (kfd !== undefined) common.deviceNodes = [{ path: '/dev/kfd', type: 'c', major: kfd, minor: 0 }]
    }
    devices.push({ name: 'all', containerEdits: mergeEdits(...devices.map(d => d.containerEdits)) })
    specs.push({ cdiVersion: CDI_VERSION, kind: GPU_KINDS[vendor], devices, containerEdits: common })
  }
  return specs
}

/**
 * Makes sure every GPU vendor on this node has a CDI spec: kinds already
 * described in the CDI dirs are left alone, missing ones are generated into
 * /var/run/cdi/bolt-<vendor>.json. Returns the paths written.
 */
export async function ensureCdiSpecs (gpus: GpuInfo[], opts: { root?: string, dirs?: string[] } = {}): Promise<string[]> {
  const root = opts.root ?? '/'
  const existing = await readCdiSpecs({ root, dirs: opts.dirs, onError: () => undefined })
  const have = new Set(existing.map(s => s.spec.kind))
  const written: string[] = []
  for (const spec of await generateCdiSpecs(gpus, { root })) {
    if (have.has(spec.kind)) continue
    const dir = join(root, GENERATED_CDI_DIR)
    await mkdirWithMode(dir, 0o755, true) // read by other CDI users (podman, containerd)
    const vendor = spec.kind.split('.')[0] as string
    const path = join(dir, `bolt-${vendor}.json`)
    await replaceFile(path, JSON.stringify(spec, null, 2) + '\n', 0o644)
    written.push(path)
  }
  return written
}

/** All devices of the CDI specs, by fully qualified name (`vendor.com/class=name`). */
export class CdiRegistry {
  private readonly devices = new Map<string, { spec: CdiSpec, edits: ContainerEdits }>()

  constructor (readonly specs: LoadedCdiSpec[]) {
    for (const { spec } of specs) {
      for (const d of spec.devices) this.devices.set(`${spec.kind}=${d.name}`, { spec, edits: d.containerEdits })
    }
  }

  get deviceNames (): string[] {
    return [...this.devices.keys()].sort()
  }

  /** Edits for named devices: each device's own, plus its spec's common edits once. */
  editsFor (names: string[]): ContainerEdits {
    const specs = new Set<CdiSpec>()
    const parts: ContainerEdits[] = []
    for (const n of names) {
      const d = this.devices.get(n)
      if (d === undefined) throw new GpuUnavailableError(`CDI device ${n} is not defined on this node (known: ${this.deviceNames.join(', ') || 'none'})`)
      parts.push(d.edits)
      specs.add(d.spec)
    }
    for (const s of specs) if (s.containerEdits !== undefined) parts.unshift(s.containerEdits)
    return mergeEdits(...parts)
  }

  /**
   * Picks `count` GPU devices not in `inUse` (per-GPU names, not `all`), in
   * kind order nvidia, amd, intel, then index order.
   */
  pick (count: number, inUse: ReadonlySet<string>): string[] {
    const candidates: string[] = []
    for (const kind of Object.values(GPU_KINDS)) {
      const names = [...this.devices.keys()].filter(n => n.startsWith(`${kind}=`) && !n.endsWith('=all'))
      names.sort((a, b) => (Number(/(\d+)$/.exec(a)?.[1] ?? 0) - Number(/(\d+)$/.exec(b)?.[1] ?? 0)) || a.localeCompare(b))
      candidates.push(...names)
    }
    const free = candidates.filter(n => !inUse.has(n))
    if (free.length < count) {
      throw new GpuUnavailableError(`capsule asks for ${count} GPU(s), this node has ${free.length} free of ${candidates.length}`)
    }
    return free.slice(0, count)
  }

  resolve (request: number | string[], inUse: ReadonlySet<string>): { devices: string[], edits: ContainerEdits } {
    const devices = typeof request === 'number' ? this.pick(request, inUse) : request
    return { devices, edits: this.editsFor(devices) }
  }
}
