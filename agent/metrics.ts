// Prometheus metrics of the agent, served at /metrics. Values are read from
// the parts' own counters when scraped, so no part depends on prom-client.
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client'

export interface MetricSources {
  membersByState: () => Record<string, number>
  membership: () => { probesSent: number, probesFailed: number, suspicionsRaised: number, suspicionsRefuted: number }
  bytesByProtocol: () => Record<string, { in: number, out: number }>
  extra?: Array<{ name: string, help: string, labels?: string[], read: () => Array<{ labels?: Record<string, string>, value: number }> }>
  /** Histograms kept by the parts themselves (e.g. agent/raft/raft-metrics.ts). */
  histograms?: Array<{ name: string, help: string, read: () => HistogramSnapshot }>
}

/** A histogram's state: cumulative counts per `le` bound, the last for +Inf. */
export interface HistogramSnapshot { bounds: number[], cumulative: number[], sum: number, count: number }

export function createMetrics (src: MetricSources): Registry {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'bolt_process_' })
  new Gauge({
    name: 'bolt_members',
    help: 'Cluster members by SWIM state as seen by this agent',
    labelNames: ['state'],
    registers: [registry],
    collect () {
      this.reset()
      for (const [state, n] of Object.entries(src.membersByState())) this.set({ state }, n)
    }
  })
  const counter = (name: string, help: string, key: keyof ReturnType<MetricSources['membership']>): void => {
    new Gauge({ name, help, registers: [registry], collect () { this.set(src.membership()[key]) } })
  }
  counter('bolt_swim_probes_sent_total', 'SWIM probes sent', 'probesSent')
  counter('bolt_swim_probes_failed_total', 'SWIM probes that got no ack in time', 'probesFailed')
  counter('bolt_swim_suspicions_raised_total', 'Members this agent started suspecting', 'suspicionsRaised')
  counter('bolt_swim_suspicions_refuted_total', 'Suspicions refuted by the suspected member', 'suspicionsRefuted')
  new Gauge({
    name: 'bolt_protocol_bytes_total',
    help: 'Bytes sent and received per cluster protocol',
    labelNames: ['protocol', 'direction'],
    registers: [registry],
    collect () {
      this.reset()
      for (const [protocol, b] of Object.entries(src.bytesByProtocol())) {
        this.set({ protocol, direction: 'in' }, b.in)
        this.set({ protocol, direction: 'out' }, b.out)
      }
    }
  })
  for (const x of src.extra ?? []) {
    new Gauge({
      name: x.name,
      help: x.help,
      labelNames: x.labels ?? [],
      registers: [registry],
      collect () {
        this.reset()
        for (const v of x.read()) {
          if (v.labels !== undefined) this.set(v.labels, v.value)
          else this.set(v.value)
        }
      }
    })
  }
  for (const h of src.histograms ?? []) registry.registerMetric(histogramMetric(h) as unknown as Parameters<Registry['registerMetric']>[0])
  return registry
}

/**
 * A histogram whose buckets a part counts itself, in the shape prom-client's
 * registry reads from its own metrics (get() → name, help, type, values).
 */
function histogramMetric (h: { name: string, help: string, read: () => HistogramSnapshot }): object {
  const get = async (): Promise<object> => {
    const s = h.read()
    const values = s.bounds.map((le, i) => ({ metricName: `${h.name}_bucket`, labels: { le }, value: s.cumulative[i] ?? 0 }))
    values.push({ metricName: `${h.name}_bucket`, labels: { le: '+Inf' as unknown as number }, value: s.count })
    return { name: h.name, help: h.help, type: 'histogram', aggregator: 'sum', values: [...values, { metricName: `${h.name}_sum`, value: s.sum }, { metricName: `${h.name}_count`, value: s.count }] }
  }
  return { name: h.name, help: h.help, type: 'histogram', aggregator: 'sum', get, reset: () => {} }
}
