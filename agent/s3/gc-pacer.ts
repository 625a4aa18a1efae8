// Collecting the dead buffers of S3 request bodies as they stream by.
// node:http copies every span of a request body into a fresh Buffer; each
// dies a few milliseconds later, once copied into a hash slot and a FastCDC
// window. The agent's GC tuning (agent/gc-tuning.ts) counts such external
// memory in the heap's global limit, so V8 leaves them to a full collection
// that comes only after hundreds of MB: an upload's RSS grew with garbage,
// not with live data. A young-generation collection (a scavenge, about a
// millisecond: the young generation holds little that is live) frees them;
// requesting one after every BODY_GC_PACE_BYTES of body keeps the dead
// bytes below about that much whatever the object's size.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** Body bytes between two young-generation collections. */
export const BODY_GC_PACE_BYTES = 16 * 1024 * 1024

type GcFn = (o: { type: 'minor' | 'major', execution: 'sync' | 'async' }) => void

/** V8's `gc` function, exposed to a fresh context only (the agent's own global gets none). */
function exposeGc (): GcFn | undefined {
  try {
    setFlagsFromString('--expose-gc')
    const fn: unknown = runInNewContext('typeof gc === "function" ? gc : undefined')
    return typeof fn === 'function' ? fn as GcFn : undefined
  } catch {
    // A runtime without the flag or vm contexts: bodies stream the same, only their garbage waits for V8's own schedule.
    return undefined
  }
}

/** Counts body bytes and requests a scavenge after every `pace` of them. */
export class GcPacer {
  private since = 0
  collections = 0
  constructor (private readonly gc: GcFn | undefined, private readonly pace = BODY_GC_PACE_BYTES) {}

  note (bytes: number): void {
    if (this.gc === undefined) return
    this.since += bytes
    if (this.since < this.pace) return
    this.since = 0
    this.collections++
    this.gc({ type: 'minor', execution: 'sync' })
  }
}

let shared: GcPacer | undefined
/** The process's pacer (all S3 bodies share one count). */
export function bodyGcPacer (): GcPacer {
  shared ??= new GcPacer(exposeGc())
  return shared
}
