// Randomized round-robin probe order (memberlist's nodes list + resetNodes):
// every member is probed once per round, in a fresh random order each round,
// so a failed member is found within one round by every prober while probes
// stay spread out. New members go in at a random place.
import { randomInt, shuffle, type Random } from './random.js'

export class ProbeOrder {
  private order: string[] = []
  private index = 0

  constructor (private readonly random: Random) {}

  insert (id: string): void {
    this.order.splice(randomInt(this.random, this.order.length + 1), 0, id)
  }

  /** The next probe-able member; at the end of a round, reshuffles `all`. */
  next (all: () => Iterable<string>, probeable: (id: string) => boolean): string | null {
    for (let pass = 0; pass < 2; pass++) {
      while (this.index < this.order.length) {
        const id = this.order[this.index++] as string
        if (probeable(id)) return id
      }
      this.order = shuffle(this.random, [...all()].filter(probeable))
      this.index = 0
    }
    return null
  }
}
