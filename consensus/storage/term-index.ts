// Terms of every stored entry as runs (first index of each term), so term(i)
// is answered from memory for the whole log while entries stay on disk.
import { invariant } from '../errors.js'

export class TermIndex {
  /** Runs sorted by start: entries [start, next start) have `term`. */
  private runs: Array<{ start: number, term: number }> = []
  private end = 0 // last index covered

  append (index: number, term: number): void {
    invariant(this.runs.length === 0 || index === this.end + 1, `term index: append ${index} after ${this.end}`)
    const lastRun = this.runs[this.runs.length - 1]
    if (lastRun === undefined || lastRun.term !== term) {
      invariant(lastRun === undefined || term > lastRun.term, `term index: term ${term} after ${lastRun?.term ?? 0}`)
      this.runs.push({ start: index, term })
    }
    this.end = index
  }

  termAt (index: number): number {
    invariant(this.runs.length > 0 && index >= (this.runs[0]?.start ?? 0) && index <= this.end, `term index: ${index} not covered`)
    let lo = 0
    let hi = this.runs.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if ((this.runs[mid]?.start ?? 0) <= index) lo = mid
      else hi = mid - 1
    }
    return this.runs[lo]?.term ?? 0
  }

  truncateFrom (index: number): void {
    while (this.runs.length > 0 && (this.runs[this.runs.length - 1]?.start ?? 0) >= index) this.runs.pop()
    this.end = this.runs.length === 0 ? 0 : index - 1
  }

  compactTo (index: number): void {
    // Drop runs that end at or before index; keep the run covering index+1.
    while (this.runs.length > 1 && (this.runs[1]?.start ?? 0) <= index + 1) this.runs.shift()
    if (this.end <= index) {
      this.runs = []
      this.end = 0
    }
  }

  clear (): void {
    this.runs = []
    this.end = 0
  }
}
