// `run`'s health and service flags turned into the spec's `health` and
// `service`, through the same parsers the API and stacks use. A bad flag is
// a usage error (exit 2) naming it. Loaded only by a `run` that has them.
import { UserError } from '../errors.js'
import { HealthCheckSyntaxError, HealthSchema, parseCheck, parseDuration, type HealthInput } from './health-spec.js'
import { SERVICE_NAME_RE } from '../scheduler/spec.js'
import type { HealthFlags } from './cli.js'

/** The spec fields (`health`, `service`) for these flags; UserError(…, 2) on bad usage. */
export function healthFromFlags (o: HealthFlags): { health?: HealthInput, service?: string } {
  const out: { health?: HealthInput, service?: string } = {}
  if (o.service !== undefined) {
    if (!SERVICE_NAME_RE.test(o.service)) throw new UserError(`--service ${o.service}: expected a DNS label (lowercase letters, digits and -, at most 63)`, 2)
    out.service = o.service
  }
  const timing = o.checkInterval !== undefined || o.checkTimeout !== undefined || o.healthyThreshold !== undefined || o.unhealthyThreshold !== undefined || o.restartUnhealthy === true
  if (o.check === undefined) {
    if (timing) throw new UserError('--check-interval, --check-timeout, the thresholds and --restart-unhealthy need --check', 2)
    return out
  }
  const flag = (name: string, f: () => number): number => {
    try { return f() } catch (err) { throw new UserError(`${name} ${(err as Error).message}`, 2) }
  }
  const count = (name: string, v: string): number => flag(name, () => {
    if (!/^\d{1,3}$/.test(v) || Number(v) < 1 || Number(v) > 100) throw new HealthCheckSyntaxError(`${v}: expected a whole number from 1 to 100`)
    return Number(v)
  })
  let check
  try { check = parseCheck(o.check) } catch (err) { throw new UserError(`--check ${(err as Error).message}`, 2) }
  const h: HealthInput = {
    check,
    ...(o.checkInterval !== undefined ? { intervalMs: flag('--check-interval', () => parseDuration(o.checkInterval ?? '')) } : {}),
    ...(o.checkTimeout !== undefined ? { timeoutMs: flag('--check-timeout', () => parseDuration(o.checkTimeout ?? '')) } : {}),
    ...(o.healthyThreshold !== undefined ? { healthyThreshold: count('--healthy-threshold', o.healthyThreshold) } : {}),
    ...(o.unhealthyThreshold !== undefined ? { unhealthyThreshold: count('--unhealthy-threshold', o.unhealthyThreshold) } : {}),
    ...(o.restartUnhealthy === true ? { restartUnhealthy: true } : {})
  }
  const r = HealthSchema.safeParse(h)
  if (!r.success) {
    const i = r.error.issues[0]
    const names: Record<string, string> = { intervalMs: '--check-interval', timeoutMs: '--check-timeout' }
    const key = String(i?.path[0] ?? '')
    throw new UserError(`${names[key] ?? '--check'}: ${i?.message ?? 'invalid'} (in milliseconds)`, 2)
  }
  out.health = h
  return out
}
