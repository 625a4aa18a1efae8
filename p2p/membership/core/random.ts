// Seeded randomness for the SWIM core: the core never calls Math.random, so a
// simulation replays exactly from its seed.

/** A random source: returns a float in [0, 1). */
export type Random = () => number

/** mulberry32: small, fast, good enough for shuffles and jitter (not for keys). */
export function seededRandom (seed: number): Random {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Integer in [0, n). */
export function randomInt (random: Random, n: number): number {
  return Math.min(n - 1, Math.floor(random() * n))
}

/** Fisher–Yates shuffle, in place. */
export function shuffle<T> (random: Random, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomInt(random, i + 1)
    const tmp = items[i] as T
    items[i] = items[j] as T
    items[j] = tmp
  }
  return items
}

/** Up to k distinct items chosen at random from those passing `accept`. */
export function pickRandom<T> (random: Random, items: readonly T[], k: number, accept: (item: T) => boolean = () => true): T[] {
  return shuffle(random, items.filter(accept)).slice(0, Math.max(0, k))
}
