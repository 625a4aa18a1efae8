// The small per-capsule record kept on disk (`capsules/<name>/state.json`),
// written atomically, so an agent that restarts after kill -9 knows what it
// had started: which waiter process to adopt, or what to clean up.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { replaceFile } from './file-modes.js'

export const EXIT_REASONS = ['exited', 'oom', 'stopped', 'start-failed', 'lost'] as const

export const CapsuleExitSchema = z.object({
  /** The process's exit code; 128+N when killed by signal N; null when unknown (lost). */
  exitCode: z.number().int().nullable(),
  /** exited: on its own; oom: the kernel OOM-killed it; stopped: by stop(); start-failed: never ran; lost: its waiter vanished. */
  reason: z.enum(EXIT_REASONS),
  oomKilled: z.boolean(),
  finishedAt: z.number()
})
export type CapsuleExit = z.infer<typeof CapsuleExitSchema>

export const CapsuleRecordSchema = z.object({
  name: z.string(),
  image: z.string(),
  runtime: z.enum(['runc', 'crun']),
  createdAt: z.number(),
  /** The detached shell that runs `<runtime> run` and writes the exit code. */
  waiterPid: z.number().int().nullable(),
  cgroup: z.string().nullable(),
  log: z.object({ maxBytes: z.number(), maxFiles: z.number() }),
  status: z.enum(['starting', 'running', 'exited']),
  stopRequested: z.boolean().default(false),
  /** CDI devices it holds, so a restarted agent does not hand them out twice. */
  devices: z.array(z.string()).default([]),
  exit: CapsuleExitSchema.nullable()
})
export type CapsuleRecord = z.infer<typeof CapsuleRecordSchema>

export const STATE_FILE = 'state.json'

export async function writeRecord (dir: string, rec: CapsuleRecord): Promise<void> {
  await replaceFile(join(dir, STATE_FILE), JSON.stringify(rec), 0o600)
}

export async function readRecord (dir: string): Promise<CapsuleRecord | undefined> {
  try {
    const r = CapsuleRecordSchema.safeParse(JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')))
    return r.success ? r.data : undefined
  } catch {
    // Missing: the capsule crashed before its first record. Unparsable: replaceFile does not fsync, so only
    // a power cut leaves it torn, and the capsule died with the machine. Both mean "no record" to recover().
    return undefined
  }
}
