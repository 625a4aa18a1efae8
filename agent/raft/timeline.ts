// A write's timeline across members: timestamped marks of the Raft write
// path (the API's write, the Ready loop's steps, messages in and out),
// kept in memory and written to a file when Raft stops. On with
// BOLT_RAFT_TIMELINE=DIR, off otherwise (nothing is marked). At one writer
// a write is a chain of waits, which a CPU profile (mostly idle) cannot
// show; scripts/raft-write-timeline.mjs merges the members' files into
// per-step latencies (docs/performance.md, Raft).
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Message } from '../../consensus/index.js'

/** Marks kept per process; later ones are dropped (a bounded diagnostic, not a log). */
export const MAX_TIMELINE_MARKS = 500_000

export class WriteTimeline {
  private readonly at: number[] = []
  private readonly points: string[] = []
  private readonly indexes: number[] = []

  /** `clock`: microseconds on a clock shared by the members' processes (CLOCK_MONOTONIC by default). */
  constructor (readonly dir: string, private readonly max = MAX_TIMELINE_MARKS, private readonly clock: () => number = monotonicMicros) {}

  get size (): number { return this.at.length }

  mark (point: string, index: number): void {
    if (this.at.length >= this.max) return
    this.at.push(this.clock())
    this.points.push(point)
    this.indexes.push(index)
  }

  /** One line per mark, `MICROS PID POINT INDEX`, in the order marked. */
  text (pid = process.pid): string {
    let out = ''
    for (let i = 0; i < this.at.length; i++) out += `${this.at[i]!} ${pid} ${this.points[i]!} ${this.indexes[i]!}\n`
    return out
  }

  /** Writes DIR/timeline-PID.txt; returns its path. */
  async dump (pid = process.pid): Promise<string> {
    await mkdir(this.dir, { recursive: true })
    const file = join(this.dir, `timeline-${pid}.txt`)
    await writeFile(file, this.text(pid))
    return file
  }

  /** dump(), its outcome logged (at Raft's stop: a timeline not written fails nothing). */
  async dumpLogged (log: { info: (o: object, msg: string) => void, warn: (o: object, msg: string) => void }): Promise<void> {
    await this.dump().then(
      (file) => { log.info({ file, marks: this.size }, 'raft write timeline written') },
      (err: Error) => { log.warn({ err: err.message, dir: this.dir }, 'raft write timeline not written') })
  }

  /** A timeline when BOLT_RAFT_TIMELINE names a directory, else undefined. */
  static fromEnv (env: NodeJS.ProcessEnv = process.env): WriteTimeline | undefined {
    const dir = env.BOLT_RAFT_TIMELINE
    return dir === undefined || dir === '' ? undefined : new WriteTimeline(dir)
  }
}

/** CLOCK_MONOTONIC in microseconds: the same clock in every process on the machine. */
function monotonicMicros (): number {
  return Number(process.hrtime.bigint() / 1000n)
}

/** The log index a message is about, for matching marks across members: an append's first entry, an answer's index, else 0. */
export function messageIndex (m: Message): number {
  if (m.type === 'app') return m.entries[0]?.index ?? m.index
  if (m.type === 'appResp') return m.index
  return 0
}
