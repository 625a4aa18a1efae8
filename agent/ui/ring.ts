// The dashboard's graphs over time: a fixed ring of samples of the agent's
// own figures, every 5 s for the last hour (720 samples, a few tens of KB),
// so no Prometheus server is needed to see the last hour.
export const SAMPLE_INTERVAL_MS = 5000
export const RING_SAMPLES = 720

/** What the sampler reads each tick: counters (monotonic) and gauges. */
export interface SampleSource {
  /** Total bytes pulled from peers and from registries since start (counters). */
  contentBytes: () => { peers: number, registry: number }
  /** Raft's commit index (a counter). */
  commitIndex: () => number
  /** Capsule instances running in the cluster (a gauge). */
  capsulesRunning: () => number
}

export const SERIES = ['time', 'cpu', 'rss', 'peerBytes', 'registryBytes', 'commits', 'running'] as const
export type SeriesName = typeof SERIES[number]

/** Columns as uPlot takes them: time (s) first, then one array a series, oldest first. */
export type RingData = Record<SeriesName, number[]>

export class MetricsRing {
  private readonly cols: Record<SeriesName, Float64Array>
  private count = 0
  private next = 0
  private last: { at: number, cpu: number, peers: number, registry: number, commit: number } | undefined

  constructor (private readonly src: SampleSource, readonly size = RING_SAMPLES) {
    this.cols = Object.fromEntries(SERIES.map(s => [s, new Float64Array(size)])) as Record<SeriesName, Float64Array>
  }

  /** Takes one sample now: rates are per second since the previous sample. */
  sample (now = Date.now()): void {
    const u = process.cpuUsage()
    const cpu = (u.user + u.system) / 1000
    const bytes = this.src.contentBytes()
    const commit = this.src.commitIndex()
    const prev = this.last
    this.last = { at: now, cpu, peers: bytes.peers, registry: bytes.registry, commit }
    if (prev === undefined) return
    const dt = Math.max(1, now - prev.at) / 1000
    const put = (s: SeriesName, v: number): void => { this.cols[s][this.next] = v }
    put('time', Math.round(now / 1000))
    put('cpu', Math.round(((cpu - prev.cpu) / 1000 / dt) * 1000) / 10) // percent of one core
    put('rss', process.memoryUsage.rss())
    put('peerBytes', Math.max(0, bytes.peers - prev.peers) / dt)
    put('registryBytes', Math.max(0, bytes.registry - prev.registry) / dt)
    put('commits', Math.max(0, commit - prev.commit) / dt)
    put('running', this.src.capsulesRunning())
    this.next = (this.next + 1) % this.size
    this.count = Math.min(this.size, this.count + 1)
  }

  /** Every sample held, oldest first. */
  data (): RingData {
    const start = (this.next - this.count + this.size) % this.size
    const out = {} as RingData
    for (const s of SERIES) {
      const col = this.cols[s]
      const a: number[] = new Array(this.count)
      for (let i = 0; i < this.count; i++) a[i] = col[(start + i) % this.size]!
      out[s] = a
    }
    return out
  }

  /** The newest sample, or undefined before the second tick. */
  latest (): Record<SeriesName, number> | undefined {
    if (this.count === 0) return undefined
    const i = (this.next - 1 + this.size) % this.size
    return Object.fromEntries(SERIES.map(s => [s, this.cols[s][i]!])) as Record<SeriesName, number>
  }

  /** Samples every interval until `signal` aborts; the timer never keeps the process alive. */
  start (signal: AbortSignal, intervalMs = SAMPLE_INTERVAL_MS): void {
    this.sample()
    const timer = setInterval(() => { try { this.sample() } catch {} }, intervalMs) // a failed tick is a gap in the graphs; the next one samples again
    timer.unref()
    signal.addEventListener('abort', () => clearInterval(timer), { once: true })
  }
}
