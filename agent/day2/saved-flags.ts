// The flags an agent was given at `init` or `join` (labels, name, listen
// addresses, role…), kept in DATA/flags.json so that `start` runs the node
// as it was set up: a restarted node keeps `zone=eu` and its capsules stay
// placed. Flags given to `start` win over the saved ones, key by key.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { writeAtomic } from '../cluster-file.js'

export const FLAGS_FILE = 'flags.json'

/** The agent flags worth keeping; the values are checked again by the config schema when used. */
const SavedFlagsSchema = z.strictObject({
  listen: z.array(z.string().max(512)).max(16).optional(),
  name: z.string().max(64).optional(),
  role: z.enum(['auto', 'server', 'client']).optional(),
  profile: z.enum(['lan', 'wan', 'edge']).optional(),
  labels: z.record(z.string().max(63), z.string().max(256)).optional(),
  mdns: z.boolean().optional(),
  api: z.strictObject({ listen: z.string().max(300) }).optional(),
  mirror: z.strictObject({ upstream: z.string().max(300) }).optional()
})
export type SavedFlags = z.infer<typeof SavedFlagsSchema>

/** Only the flags that were given (undefined ones are not saved, so the file's values still apply at `start`). */
export function flagsToSave (flags: Record<string, unknown>): SavedFlags {
  const given = Object.fromEntries(Object.entries(flags).filter(([k, v]) => v !== undefined && k in SavedFlagsSchema.shape))
  return SavedFlagsSchema.parse(given)
}

export async function saveFlags (dataDir: string, flags: Record<string, unknown>): Promise<void> {
  await writeAtomic(join(dataDir, FLAGS_FILE), JSON.stringify(flagsToSave(flags), null, 2) + '\n')
}

/** The saved flags; none when the file is absent (a node set up before this file existed). */
export async function loadSavedFlags (dataDir: string): Promise<SavedFlags> {
  let text: string
  try {
    text = await readFile(join(dataDir, FLAGS_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw err
  }
  let raw: unknown
  try { raw = JSON.parse(text) } catch { raw = undefined }
  const r = SavedFlagsSchema.safeParse(raw)
  if (!r.success) throw new Error(`${join(dataDir, FLAGS_FILE)} is damaged (${r.error.issues[0]?.path.join('.') ?? ''}: ${r.error.issues[0]?.message ?? 'not JSON'}); fix or remove it (then give the flags to start again)`)
  return r.data
}

/** `start`'s flags over the saved ones: a flag given now wins. */
export function mergeFlags (saved: SavedFlags, given: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...saved }
  for (const [k, v] of Object.entries(given)) if (v !== undefined) out[k] = v
  return out
}
