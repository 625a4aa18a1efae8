// Image pulls running on this node, whoever started them: `bolt-agent pull`
// (and the dashboard's form) through the API, or the supervisor preparing
// a capsule's image. Each pull's latest progress is kept by reference, so
// following a pull costs the pull one assignment and one call per report.
import type { ImagePullProgress } from '../p2p/content/image-puller.js'

/** Who started a pull: the API (`bolt-agent pull`, the dashboard) or a capsule start. */
export type PullStarter = 'api' | 'capsule'

export interface PullView {
  id: number
  ref: string
  startedBy: PullStarter
  /** ms since the epoch. */
  startedAt: number
  /** The newest report; undefined before the first. */
  progress: ImagePullProgress | undefined
}

/** At most this many pulls are listed (the oldest first); more still run, unlisted. */
export const MAX_LISTED_PULLS = 100

export class PullsInProgress {
  private readonly active = new Map<number, PullView>()
  private readonly listeners = new Set<() => void>()
  private next = 1

  /** Records a pull; `update` takes each progress report, `end` removes it (call it in a `finally`). */
  begin (ref: string, startedBy: PullStarter): { update: (p: ImagePullProgress) => void, end: () => void } {
    const view: PullView = { id: this.next++, ref, startedBy, startedAt: Date.now(), progress: undefined }
    this.active.set(view.id, view)
    this.changed()
    return {
      update: (p) => { view.progress = p; this.changed() },
      end: () => { if (this.active.delete(view.id)) this.changed() }
    }
  }

  list (): PullView[] {
    const out: PullView[] = []
    for (const v of this.active.values()) {
      if (out.length === MAX_LISTED_PULLS) break
      out.push({ ...v })
    }
    return out
  }

  get size (): number { return this.active.size }

  /** `cb` after every change (a pull began, reported or ended); returns how to stop listening. */
  onChange (cb: () => void): () => void {
    this.listeners.add(cb)
    return () => { this.listeners.delete(cb) }
  }

  private changed (): void {
    for (const l of this.listeners) {
      // A listener's failure must not fail the pull that reported.
      try { l() } catch (err) { process.emitWarning(`pulls in progress: a listener failed: ${(err as Error).message}`) }
    }
  }
}
