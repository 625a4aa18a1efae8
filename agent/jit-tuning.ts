// How soon the agent's V8 compiles a function. By default V8 interprets a
// function's bytecode until the function is warm, then compiles it to
// baseline (Sparkplug) code, and later to optimized code. An agent's first
// pull runs the piece exchange's code paths for the first time in that
// process, while the blob moves. `--always-sparkplug` compiles each
// function to baseline code when it is first compiled (baseline compilation
// is fast and needs no warm-up data), so the first pull spends less in the
// interpreter. Measured with 8 agents pulling a 257 MiB image on 2 cores,
// 7 alternating pairs: faster with the flag in all 7, by 1-16% (time) and
// 1-17% (agent CPU). The cost is at start, where code that runs once is
// compiled too: CPU from start to ready rose by 0-15% (batches of 6 starts).
//
// It is set at start, with the GC flag: set once the agent was ready, it
// made no difference over 4 pairs, because the data path (streams, noise,
// yamux) already ran while the cluster formed and stayed interpreted until
// warm. The edge profile keeps the default: baseline code is memory, and an
// edge agent serves no pieces.
import { setFlagsFromString } from 'node:v8'
import type { Config } from './config.js'

export const AGENT_JIT_FLAGS: readonly string[] = ['--always-sparkplug']

/** Sets AGENT_JIT_FLAGS in this process unless the config is the edge profile; returns the flags set. */
export function tuneJit (config: Pick<Config, 'profile'> | undefined): readonly string[] {
  if (config?.profile === 'edge') return []
  // V8 reads this flag whenever it compiles a function, so setting it after
  // start-up applies to every function compiled from then on (see test/agent/jit-tuning.test.ts).
  for (const f of AGENT_JIT_FLAGS) setFlagsFromString(f)
  return AGENT_JIT_FLAGS
}
