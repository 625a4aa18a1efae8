// Runs one instance's health check on the node that runs it, every interval,
// and turns pass/fail streaks into `starting|healthy|unhealthy` by the
// thresholds. The verdict is only reported when it changes; the probe itself
// never writes to Raft. The address probed comes from the caller, so a
// bridge-networked capsule's own address plugs in where host network uses
// 127.0.0.1.
import { connect } from 'node:net'
import type { Health, HealthCheck, HealthState } from './health-spec.js'

export interface ProbeTarget {
  /** Where tcp/http checks connect. */
  address: string
  /** The port an http check without its own uses (first published tcp container port). */
  httpPort: number | undefined
  /** Runs argv inside the capsule (the runtime's exec). */
  exec: (argv: string[], opts: { timeoutMs: number, signal: AbortSignal }) => Promise<{ exitCode: number }>
}

export interface ProbeResult { ok: boolean, detail: string }

/** One run of a check, bounded by `timeoutMs` and `signal`. Never throws. */
export async function runCheck (check: HealthCheck, target: ProbeTarget, timeoutMs: number, signal: AbortSignal): Promise<ProbeResult> {
  const s = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
  try {
    switch (check.kind) {
      case 'tcp': return await tcpProbe(target.address, check.port, s)
      case 'http': {
        const port = check.port ?? target.httpPort
        if (port === undefined) return { ok: false, detail: 'http check has no port (write http:PORT/PATH or publish a tcp port)' }
        const host = target.address.includes(':') ? `[${target.address}]` : target.address
        const res = await fetch(`http://${host}:${port}${check.path}`, { signal: s, redirect: 'manual' })
        await res.body?.cancel().catch(() => undefined) // only the status counts; a body already gone is fine
        return { ok: res.status >= 200 && res.status < 400, detail: `HTTP ${res.status}` }
      }
      case 'exec': {
        const r = await target.exec(['/bin/sh', '-c', check.command], { timeoutMs, signal: s })
        return { ok: r.exitCode === 0, detail: `exit ${r.exitCode}` }
      }
    }
  } catch (err) {
    return { ok: false, detail: s.aborted && !signal.aborted ? `timed out after ${timeoutMs} ms` : (err as Error).message }
  }
}

async function tcpProbe (host: string, port: number, signal: AbortSignal): Promise<ProbeResult> {
  return await new Promise(resolve => {
    const sock = connect({ host, port })
    const done = (r: ProbeResult): void => { signal.removeEventListener('abort', onAbort); sock.destroy(); resolve(r) }
    const onAbort = (): void => { done({ ok: false, detail: 'timed out' }) }
    signal.addEventListener('abort', onAbort, { once: true })
    if (signal.aborted) { onAbort(); return }
    sock.once('connect', () => { done({ ok: true, detail: 'connected' }) })
    sock.once('error', (err) => { done({ ok: false, detail: err.message }) })
  })
}

/**
 * Pass/fail streaks to a verdict: `healthyThreshold` passes in a row make it
 * healthy, `unhealthyThreshold` failures in a row unhealthy; `starting`
 * until the first verdict. Pure, so the thresholds are table-tested.
 */
export class HealthVerdict {
  state: HealthState = 'starting'
  private passes = 0
  private failures = 0

  constructor (private readonly h: Pick<Health, 'healthyThreshold' | 'unhealthyThreshold'>) {}

  /** Records one result; returns the new state when it changed. */
  record (ok: boolean): HealthState | undefined {
    if (ok) { this.passes++; this.failures = 0 } else { this.failures++; this.passes = 0 }
    const before = this.state
    if (ok && this.passes >= this.h.healthyThreshold) this.state = 'healthy'
    else if (!ok && this.failures >= this.h.unhealthyThreshold) this.state = 'unhealthy'
    return this.state !== before ? this.state : undefined
  }
}

/**
 * Probes until `signal` aborts: the first check at once, then one every
 * interval (a slow check delays the next, never overlaps it). `onChange`
 * gets each transition.
 */
export async function watchHealth (health: Health, target: ProbeTarget, onChange: (state: HealthState, detail: string) => void, signal: AbortSignal): Promise<void> {
  const verdict = new HealthVerdict(health)
  while (!signal.aborted) {
    const r = await runCheck(health.check, target, health.timeoutMs, signal)
    if (signal.aborted) return
    const next = verdict.record(r.ok)
    if (next !== undefined) onChange(next, r.detail)
    await sleep(health.intervalMs, signal)
  }
}

function sleep (ms: number, signal: AbortSignal): Promise<void> {
  return new Promise(resolve => {
    if (signal.aborted) { resolve(); return }
    const t = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(t); resolve() }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
