// The node's devices granted to capsules at start: GPUs picked through CDI
// (serialized, so two concurrent starts never get the same device) and the
// gaming profile's input, sound and display devices, applied to the bundle.
import { applyContainerEdits, mergeEdits } from './edits.js'
import type { OciSpec } from '../bundle/oci-spec.js'
import type { CapsuleRunSpec } from '../spec.js'
import type { DeviceProvider } from '../runtime-types.js'

export class DeviceGrants {
  private lock: Promise<void> = Promise.resolve()
  /** Devices picked by a start still in progress (not yet held by a running capsule). */
  private readonly reserved = new Set<string>()

  constructor (private readonly devices: DeviceProvider) {}

  /**
   * Applies the GPU and gaming edits `spec` asks for to `config`; returns the
   * GPUs picked, reserved until release(). `held`: devices running capsules hold.
   */
  async apply (config: OciSpec, spec: CapsuleRunSpec, held: () => Iterable<string>): Promise<string[]> {
    let picked: string[] = []
    if (spec.gpus !== undefined && spec.gpus !== 0) {
      const gpus = spec.gpus
      picked = await this.serialized(async () => {
        const g = await this.devices.gpuEdits(gpus, new Set([...this.reserved, ...held()]))
        for (const d of g.devices) this.reserved.add(d)
        await applyContainerEdits(config, g.edits, this.devices.hostRoot)
        return g.devices
      })
    }
    if (spec.gaming !== undefined && spec.gaming !== false) {
      try {
        const edits = await this.devices.gamingEdits(spec.gaming === true ? undefined : spec.gaming)
        await applyContainerEdits(config, mergeEdits(edits), this.devices.hostRoot)
      } catch (err) {
        this.release(picked)
        throw err
      }
    }
    return picked
  }

  /** The start that picked `devices` is over (running, they are held by it; failed, they are free). */
  release (devices: readonly string[]): void {
    for (const d of devices) this.reserved.delete(d)
  }

  private async serialized<T> (fn: () => Promise<T>): Promise<T> {
    const prev = this.lock
    let done!: () => void
    this.lock = new Promise<void>(resolve => { done = resolve })
    await prev
    try {
      return await fn()
    } finally {
      done()
    }
  }
}
