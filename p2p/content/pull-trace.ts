// Diagnosis only: with BOLT_PULL_TRACE=DIR set, each pull writes a timeline
// of its events (queries answered, requests, pieces received and stored) as
// JSON lines to DIR/<digest>.<pid>.jsonl when it ends. Off: one check per event.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

const DIR = process.env.BOLT_PULL_TRACE

export class PullTrace {
  private readonly lines: string[] = []
  private readonly t0 = performance.now()
  constructor (private readonly digest: string) {}
  static create (digest: string): PullTrace | undefined { return DIR === undefined || DIR === '' ? undefined : new PullTrace(digest) }
  ev (e: Record<string, unknown>): void { this.lines.push(JSON.stringify({ t: Math.round(performance.now() - this.t0), at: Date.now(), ...e })) }
  flush (): void {
    try { writeFileSync(join(DIR as string, `${this.digest.slice(7, 19)}.${process.pid}.jsonl`), this.lines.join('\n') + '\n') } catch { /* diagnosis only */ }
  }
}
