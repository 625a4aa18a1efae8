// Health checks as the user writes them (`--check tcp:PORT|http:[PORT]/PATH|exec:CMD`,
// durations like `2s`) and as the capsule spec stores them. Pure parsers: the
// CLI, stacks and the API share them, so a bad check is refused the same way
// everywhere, with one line that names the flag and what was expected.
import { z } from 'zod'

export const DEFAULT_CHECK_INTERVAL_MS = 10_000
export const DEFAULT_CHECK_TIMEOUT_MS = 2000
/** Passes in a row before `starting`/`unhealthy` becomes `healthy` (one: a capsule is served as soon as it answers). */
export const DEFAULT_HEALTHY_THRESHOLD = 1
/** Failures in a row before `healthy` becomes `unhealthy` (Docker's default retries: one slow answer is not an outage). */
export const DEFAULT_UNHEALTHY_THRESHOLD = 3

export class HealthCheckSyntaxError extends Error {
  override name = 'HealthCheckSyntaxError'
}

const Port = z.number().int().min(1).max(65535)

export const HealthCheckSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('tcp'), port: Port }),
  /** 2xx/3xx is healthy. Without a port: the capsule's first published tcp port (its container side). */
  z.strictObject({ kind: z.literal('http'), path: z.string().regex(/^\/[\x21-\x7e]*$/, 'an absolute URL path such as /healthz').max(1024), port: Port.optional() }),
  /** Run inside the capsule with /bin/sh -c; exit 0 is healthy. */
  z.strictObject({ kind: z.literal('exec'), command: z.string().min(1).max(4096) })
])
export type HealthCheck = z.infer<typeof HealthCheckSchema>

export const HealthSchema = z.strictObject({
  check: HealthCheckSchema,
  intervalMs: z.number().int().min(100).max(3_600_000).default(DEFAULT_CHECK_INTERVAL_MS),
  timeoutMs: z.number().int().min(50).max(600_000).default(DEFAULT_CHECK_TIMEOUT_MS),
  healthyThreshold: z.number().int().min(1).max(100).default(DEFAULT_HEALTHY_THRESHOLD),
  unhealthyThreshold: z.number().int().min(1).max(100).default(DEFAULT_UNHEALTHY_THRESHOLD),
  /** Stop and start the instance again when it turns unhealthy (counts as a restart). */
  restartUnhealthy: z.boolean().default(false)
})
export type Health = z.infer<typeof HealthSchema>
export type HealthInput = z.input<typeof HealthSchema>

export const HealthStateSchema = z.enum(['starting', 'healthy', 'unhealthy'])
export type HealthState = z.infer<typeof HealthStateSchema>

/** `tcp:PORT`, `http:/PATH`, `http:PORT/PATH`, `exec:CMD`. Throws HealthCheckSyntaxError naming what was expected. */
export function parseCheck (text: string): HealthCheck {
  const i = text.indexOf(':')
  const kind = i < 0 ? text : text.slice(0, i)
  const rest = i < 0 ? '' : text.slice(i + 1)
  const port = (s: string): number => {
    if (!/^\d{1,5}$/.test(s) || Number(s) < 1 || Number(s) > 65535) throw new HealthCheckSyntaxError(`${text}: ${s === '' ? 'no port' : `port ${s} is not a number from 1 to 65535`} (expected e.g. tcp:8080)`)
    return Number(s)
  }
  switch (kind) {
    case 'tcp': return { kind: 'tcp', port: port(rest) }
    case 'http': {
      const m = /^(\d*)(\/.*)?$/s.exec(rest)
      if (m === null || m[2] === undefined) throw new HealthCheckSyntaxError(`${text}: no path (expected http:/healthz or http:8080/healthz)`)
      const path = m[2]
      if (!/^\/[\x21-\x7e]*$/.test(path) || path.length > 1024) throw new HealthCheckSyntaxError(`${text}: the path must be printable ASCII without spaces, at most 1024 characters`)
      return m[1] === '' ? { kind: 'http', path } : { kind: 'http', path, port: port(m[1] ?? '') }
    }
    case 'exec': {
      if (rest.trim() === '') throw new HealthCheckSyntaxError(`${text}: no command (expected e.g. exec:"test -f /tmp/ready")`)
      if (rest.length > 4096) throw new HealthCheckSyntaxError('exec check: the command is longer than 4096 characters')
      return { kind: 'exec', command: rest }
    }
    default: throw new HealthCheckSyntaxError(`${text}: expected tcp:PORT, http:PATH or exec:CMD`)
  }
}

/** The check as the user would write it again (ps, inspect). */
export function formatCheck (c: HealthCheck): string {
  switch (c.kind) {
    case 'tcp': return `tcp:${c.port}`
    case 'http': return `http:${c.port ?? ''}${c.path}`
    case 'exec': return `exec:${c.command}`
  }
}

/** `500ms`, `2s`, `1m`, or a bare number of milliseconds. */
export function parseDuration (text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim())
  if (m === null) throw new HealthCheckSyntaxError(`${text}: expected a duration such as 500ms, 2s or 1m`)
  const v = Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000 }[m[2] ?? 'ms'] ?? 1)
  if (!Number.isFinite(v) || v > 2 ** 31) throw new HealthCheckSyntaxError(`${text}: too long`)
  return Math.round(v)
}
