// GPU discovery from the kernel's own files, under an injectable root so tests
// run on fixture trees: NVIDIA from /proc/driver/nvidia/gpus/*/information
// (memory from nvidia-smi when present), AMD and Intel from
// /sys/class/drm/card*/device/{vendor,device} and their render nodes.
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCommand } from '../command.js'
import { findBinary } from '../oci/driver.js'

export type GpuVendor = 'nvidia' | 'amd' | 'intel'

export interface GpuInfo {
  vendor: GpuVendor
  model: string
  memoryBytes: number | null
  /** Per-vendor index: nvidia-smi's order for NVIDIA, DRM card order otherwise. */
  index: number
  uuid: string | null
  pciBusId: string | null
  /** NVIDIA's /dev/nvidiaN minor. */
  minor: number | null
  /** /dev/dri/cardN and /dev/dri/renderDN, when the GPU has DRM nodes. */
  drmCard: string | null
  renderNode: string | null
}

const VENDOR_IDS: Record<string, GpuVendor> = { '0x10de': 'nvidia', '0x1002': 'amd', '0x8086': 'intel' }

/** A few well-known device ids; others show as "<Vendor> GPU 0x<id>". */
const MODEL_NAMES: Record<string, string> = {
  '0x1002:0x740f': 'AMD Instinct MI210',
  '0x1002:0x740c': 'AMD Instinct MI250X',
  '0x1002:0x74a1': 'AMD Instinct MI300X',
  '0x1002:0x744c': 'AMD Radeon RX 7900 XTX',
  '0x1002:0x73bf': 'AMD Radeon RX 6900 XT',
  '0x8086:0x56a0': 'Intel Arc A770',
  '0x8086:0x56a1': 'Intel Arc A750',
  '0x8086:0x0bd5': 'Intel Data Center GPU Max 1550',
  '0x8086:0xa780': 'Intel UHD Graphics 770',
  '0x8086:0x46a6': 'Intel Iris Xe Graphics'
}

/** Runs nvidia-smi with `args`, returning stdout, or undefined when it is absent or fails. */
export type NvidiaSmiRunner = (args: string[]) => Promise<string | undefined>

export interface DiscoverOptions {
  /** Host root; '/' in production, a fixture tree in tests. */
  root?: string
  /** Defaults to the real nvidia-smi when root is '/', to none otherwise. */
  nvidiaSmi?: NvidiaSmiRunner
}

export const NVIDIA_SMI_QUERY = ['--query-gpu=index,name,uuid,memory.total,pci.bus_id', '--format=csv,noheader,nounits']

export async function systemNvidiaSmi (args: string[]): Promise<string | undefined> {
  const bin = await findBinary('nvidia-smi')
  if (bin === undefined) return undefined
  const r = await runCommand(bin, args, { timeoutMs: 15_000 }).catch(() => undefined) // one that cannot run is as good as none: the caller falls back to /proc and /sys
  return r?.exitCode === 0 ? r.stdout : undefined
}

async function readText (p: string): Promise<string | undefined> {
  return await readFile(p, 'utf8').then(s => s.trim(), () => undefined)
}

/** Parses one /proc/driver/nvidia/gpus/<bus>/information file ("Key:  value" lines). */
export function parseNvidiaInformation (text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const i = line.indexOf(':')
    if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim()
  }
  return out
}

/** Parses `nvidia-smi --query-gpu=index,name,uuid,memory.total,pci.bus_id --format=csv,noheader,nounits`. */
export function parseNvidiaSmiCsv (csv: string): Array<{ index: number, name: string, uuid: string, memoryBytes: number | null, pciBusId: string }> {
  const out = []
  for (const line of csv.split('\n')) {
    const f = line.split(',').map(s => s.trim())
    if (f.length < 5 || !/^\d+$/.test(f[0] as string)) continue
    const mib = Number(f[3])
    out.push({ index: Number(f[0]), name: f[1] as string, uuid: f[2] as string, memoryBytes: Number.isFinite(mib) ? mib * 1024 * 1024 : null, pciBusId: normalizeBusId(f[4] as string) })
  }
  return out
}

/** nvidia-smi prints 00000000:18:00.0, procfs 0000:18:00.0: compare on domain-less lower case. */
export function normalizeBusId (id: string): string {
  const m = /([0-9a-fA-F]+):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$/.exec(id.trim())
  return m === null ? id.trim().toLowerCase() : `${m[2]}:${m[3]}.${m[4]}`.toLowerCase()
}

interface DrmCard { card: string, render: string | null, vendor: GpuVendor, vendorId: string, deviceId: string, busId: string | null, dev: string }

async function drmCards (root: string): Promise<DrmCard[]> {
  const base = join(root, 'sys/class/drm')
  // Here and below: a sysfs/procfs directory that is not there means no such device.
  const names = (await readdir(base).catch(() => [] as string[])).filter(n => /^card\d+$/.test(n))
  names.sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)))
  const out: DrmCard[] = []
  for (const card of names) {
    const dev = join(base, card, 'device')
    const vendorId = (await readText(join(dev, 'vendor')))?.toLowerCase()
    const deviceId = (await readText(join(dev, 'device')))?.toLowerCase()
    if (vendorId === undefined || deviceId === undefined) continue
    const vendor = VENDOR_IDS[vendorId]
    if (vendor === undefined) continue
    // no drm/ under the card: it has no render node
    const render = (await readdir(join(dev, 'drm')).catch(() => [] as string[])).find(n => /^renderD\d+$/.test(n)) ?? null
    const uevent = await readText(join(dev, 'uevent')) ?? ''
    const slot = /^PCI_SLOT_NAME=(.+)$/m.exec(uevent)?.[1]
    out.push({ card, render, vendor, vendorId, deviceId, busId: slot !== undefined ? normalizeBusId(slot) : null, dev })
  }
  return out
}

export async function discoverGpus (opts: DiscoverOptions = {}): Promise<GpuInfo[]> {
  const root = opts.root ?? '/'
  const smi = opts.nvidiaSmi ?? (root === '/' ? systemNvidiaSmi : async () => undefined)
  const cards = await drmCards(root)
  const gpus: GpuInfo[] = []

  const procDir = join(root, 'proc/driver/nvidia/gpus')
  const nvidia: GpuInfo[] = []
  for (const bus of (await readdir(procDir).catch(() => [] as string[])).sort()) { // no NVIDIA driver loaded: none
    const info = parseNvidiaInformation(await readText(join(procDir, bus, 'information')) ?? '')
    const minor = Number(info['Device Minor'])
    const busId = normalizeBusId(info['Bus Location'] ?? bus)
    const card = cards.find(c => c.vendor === 'nvidia' && c.busId === busId)
    nvidia.push({
      vendor: 'nvidia',
      model: info.Model ?? 'NVIDIA GPU',
      memoryBytes: null,
      index: Number.isInteger(minor) ? minor : nvidia.length,
      uuid: info['GPU UUID'] ?? null,
      pciBusId: busId,
      minor: Number.isInteger(minor) ? minor : null,
      drmCard: card !== undefined ? `/dev/dri/${card.card}` : null,
      renderNode: card?.render !== null && card?.render !== undefined ? `/dev/dri/${card.render}` : null
    })
  }
  const csv = nvidia.length > 0 || root === '/' ? await smi(NVIDIA_SMI_QUERY) : undefined
  for (const row of csv !== undefined ? parseNvidiaSmiCsv(csv) : []) {
    const g = nvidia.find(n => (n.uuid !== null && n.uuid === row.uuid) || n.pciBusId === row.pciBusId)
    if (g !== undefined) {
      g.index = row.index
      g.model = row.name
      g.memoryBytes = row.memoryBytes
    } else {
      nvidia.push({ vendor: 'nvidia', model: row.name, memoryBytes: row.memoryBytes, index: row.index, uuid: row.uuid, pciBusId: row.pciBusId, minor: row.index, drmCard: null, renderNode: null })
    }
  }
  nvidia.sort((a, b) => a.index - b.index)
  gpus.push(...nvidia)

  for (const vendor of ['amd', 'intel'] as const) {
    let index = 0
    for (const c of cards.filter(x => x.vendor === vendor)) {
      const product = await readText(join(c.dev, 'product_name'))
      const vram = await readText(join(c.dev, vendor === 'amd' ? 'mem_info_vram_total' : 'lmem_total_bytes'))
      gpus.push({
        vendor,
        model: product !== undefined && product !== '' ? product : MODEL_NAMES[`${c.vendorId}:${c.deviceId}`] ?? `${vendor === 'amd' ? 'AMD' : 'Intel'} GPU ${c.deviceId}`,
        memoryBytes: vram !== undefined && /^\d+$/.test(vram) ? Number(vram) : null,
        index: index++,
        uuid: (await readText(join(c.dev, 'unique_id'))) ?? null,
        pciBusId: c.busId,
        minor: null,
        drmCard: `/dev/dri/${c.card}`,
        renderNode: c.render !== null ? `/dev/dri/${c.render}` : null
      })
    }
  }
  return gpus
}
