// The gaming profile: what a game (often under Wine/Proton with DXVK) needs
// from the host besides the GPU — DRI render nodes, input devices, sound
// devices, the PulseAudio/PipeWire and X11/Wayland sockets — and the env
// those stacks read.
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { CdiDeviceNode, ContainerEdits } from './edits.js'

/** Where the host's runtime-dir sockets appear inside the capsule. */
export const CAPSULE_XDG_RUNTIME_DIR = '/run/bolt-xdg'

export interface GamingOptions {
  display?: string
  waylandDisplay?: string
  xdgRuntimeDir?: string
}

/** Env read by Wine, Proton, DXVK/VKD3D and SDL; safe defaults for a headless-managed capsule. */
export const GAMING_ENV: readonly string[] = [
  'WINEDEBUG=-all',
  'WINEESYNC=1',
  'WINEFSYNC=1',
  'DXVK_LOG_LEVEL=none',
  'DXVK_STATE_CACHE_PATH=/tmp',
  'VKD3D_DEBUG=none',
  'PROTON_LOG=0',
  'STEAM_COMPAT_DATA_PATH=/tmp/proton',
  'STEAM_COMPAT_CLIENT_INSTALL_PATH=/tmp/steam',
  'NVIDIA_DRIVER_CAPABILITIES=all',
  '__GL_SHADER_DISK_CACHE_PATH=/tmp'
]

async function exists (p: string): Promise<boolean> {
  return await stat(p).then(() => true, () => false)
}

async function nodesIn (root: string, dir: string, match: RegExp): Promise<CdiDeviceNode[]> {
  const names = (await readdir(join(root, dir)).catch(() => [] as string[])).filter(n => match.test(n)).sort() // no such dir on this host: no such devices
  return names.map(n => ({ path: `/${dir}/${n}` }))
}

/** The container edits of the gaming profile, from what exists under `root`. */
export async function gamingEdits (opts: GamingOptions = {}, root = '/'): Promise<ContainerEdits> {
  const deviceNodes = [
    ...await nodesIn(root, 'dev/dri', /^(card|renderD)\d+$/),
    ...await nodesIn(root, 'dev/input', /^(event\d+|js\d+|mice)$/),
    ...await nodesIn(root, 'dev/snd', /^(controlC\d+|pcmC\d+D\d+[cp]|timer|seq|hwC\d+D\d+)$/)
  ]
  if (await exists(join(root, 'dev/uinput'))) deviceNodes.push({ path: '/dev/uinput' })
  const env = [...GAMING_ENV]
  const mounts: NonNullable<ContainerEdits['mounts']> = []
  if (opts.display !== undefined && await exists(join(root, 'tmp/.X11-unix'))) {
    mounts.push({ hostPath: '/tmp/.X11-unix', containerPath: '/tmp/.X11-unix', options: ['rbind', 'rprivate', 'nosuid', 'nodev'] })
    env.push(`DISPLAY=${opts.display}`, 'SDL_VIDEODRIVER=x11')
  }
  const xdg = opts.xdgRuntimeDir
  if (xdg !== undefined) {
    env.push(`XDG_RUNTIME_DIR=${CAPSULE_XDG_RUNTIME_DIR}`)
    const sock = async (rel: string): Promise<boolean> => {
      if (!(await exists(join(root, xdg, rel)))) return false
      mounts.push({ hostPath: join(xdg, rel), containerPath: join(CAPSULE_XDG_RUNTIME_DIR, rel), options: ['rbind', 'rprivate', 'nosuid', 'nodev'] })
      return true
    }
    if (opts.waylandDisplay !== undefined && await sock(opts.waylandDisplay)) {
      env.push(`WAYLAND_DISPLAY=${opts.waylandDisplay}`)
      if (opts.display === undefined) env.push('SDL_VIDEODRIVER=wayland')
    }
    if (await sock('pulse/native')) env.push(`PULSE_SERVER=unix:${CAPSULE_XDG_RUNTIME_DIR}/pulse/native`)
    if (await sock('pipewire-0')) env.push(`PIPEWIRE_RUNTIME_DIR=${CAPSULE_XDG_RUNTIME_DIR}`)
  }
  return { env, deviceNodes, mounts }
}
