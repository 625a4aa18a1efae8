// How the agent's V8 decides to collect garbage under buffer churn. Moving
// blobs allocates a new ArrayBuffer for nearly every byte: each socket read,
// each decrypted frame, each encrypted one. By default V8 starts a full
// mark-compact of the whole heap each time 64 MB more such memory has been
// allocated since the last one. (Those buffers die within seconds, yet
// most outlive the young generation: at the end of a pull, 330 MB of an
// agent's 600 MB peak RSS were dead buffers only a full collection freed,
// with a 32 MB young generation or without the recent-piece cache too.)
// Measured with 8 agents pulling a 257 MiB image on 2 cores: 17-25 full
// collections per agent per pull, and the V8 helper threads as busy as a
// third of the machine.
//
// `--external-memory-accounted-in-global-limit` counts that memory in the
// heap's global limit instead, which grows with what is live. The same pull
// then takes 15-25% less CPU and finishes 10-20% sooner, and an agent's
// peak RSS is 100-200 MB higher: dead buffers wait longer for a collection
// (after a pull, V8's memory reducer collected them within 10-30 s idle).
//
// `--heap-growing-percent=200` fixes how far the heap may grow after a full
// collection before the next: to three times what was live. V8 otherwise
// picks the factor from how fast its collector ran against the program, in
// wall time; with several busy processes on few cores the collector looks
// slow and the factor stays near 1.2, so an agent at 50 MB live collected
// the whole heap every 1-2 s of a pull. Measured on 2 cores, 8 skopeo
// clients pulling 257 MiB through 8 agents' mirrors, 3 alternating runs:
// V8 helper threads 8.2-9.2 -> 5.4-6.3 CPU-s, agents 35-37 -> 30-34 CPU-s,
// the pull 23.5-24.3 s -> 20.8-23.1 s; full collections during a plain
// `pull` by 8 agents, 78 -> 18. Peak RSS per agent stayed at 550-750 MB;
// the idle agent of the footprint scenario did not grow (155-164 MB
// against 174-175).
//
// `--semi-space-growth-factor=1` keeps the young generation at the size it
// has when the agent starts (a few MiB). V8 otherwise doubles it whenever a
// scavenge finds much surviving, which loading ~1,500 modules does, up to
// 16 MiB per semi-space: an idle agent then kept about 40 MB of young
// generation resident. `--max-semi-space-size` would bound it too, but V8
// reads that only when the process starts, and the growth factor at every
// scavenge (a command-line --semi-space-growth-factor is overridden at
// start-up: it must be set here). Cost: more frequent scavenges under load;
// pieces live in ArrayBuffers outside the heap, so each one stays cheap.
//
// That holds for start-up only. Once the start is over (after
// compactHeap) the growth factor goes back to V8's default, so a
// young generation that a busy agent needs can grow: with it pinned at
// 1 MiB, a Raft leader taking 64 concurrent writers scavenged 40-60
// times a second, a fifth of its main thread, and its V8 helper threads
// spent as much again. V8 shrinks the young generation back when the
// allocation rate falls (under 1 MB/s), so an idle agent keeps it small.
//
// The edge profile keeps the default: there memory is the scarce thing, and
// an edge agent serves no pieces (its young generation is bounded by the
// --max-semi-space-size it restarts with, edge-runtime.ts).
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { Config } from './config.js'

export const AGENT_GC_FLAGS: readonly string[] = ['--external-memory-accounted-in-global-limit', '--heap-growing-percent=200', '--semi-space-growth-factor=1']

/** Sets AGENT_GC_FLAGS in this process unless the config is the edge profile; returns the flags set. */
export function tuneGc (config: Pick<Config, 'profile'> | undefined): readonly string[] {
  if (config?.profile === 'edge') return []
  // V8 reads these flags at each allocation-limit decision, so setting them
  // after start-up takes effect (see test/agent/gc-tuning.test.ts).
  for (const f of AGENT_GC_FLAGS) setFlagsFromString(f)
  return AGENT_GC_FLAGS
}

/** The growth factor V8 uses by default; see the comment at the top (after start-up). */
export const YOUNG_GROWTH_AFTER_START = '--semi-space-growth-factor=2'

/** After start-up: lets the young generation grow again under load (the edge profile never pinned it). */
export function letYoungGenerationGrow (config: Pick<Config, 'profile'> | undefined): void {
  if (config?.profile !== 'edge') setFlagsFromString(YOUNG_GROWTH_AFTER_START)
}

/** How long after the agent is ready it compacts its heap once (the start's last bursts are over by then). */
export const STARTUP_COMPACT_DELAY_MS = 5000

/**
 * Collects the heap once the agent has started, the way V8 does under
 * memory pressure: full collections that compact the old generation and
 * shrink the young one back to its minimum. Start-up leaves both larger
 * than an idle agent needs (module loading, the first Raft and gossip
 * rounds), and an idle agent allocates too slowly for V8's own memory
 * reducer to get to it soon. One pause of a few hundred ms, off the start
 * path; `--expose-gc` set here only lends this one call its `gc`.
 */
export async function compactHeap (): Promise<void> {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as (o: { type: 'major', execution: 'sync', flavor: 'last-resort' }) => Promise<void> | undefined
  await gc({ type: 'major', execution: 'sync', flavor: 'last-resort' })
}
