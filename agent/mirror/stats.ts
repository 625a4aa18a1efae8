// Counters of the registry mirror, read by the agent's /metrics.
export interface MirrorStats {
  /** Requests by kind (base, manifest, blob, other). */
  requests: { base: number, manifest: number, blob: number, other: number }
  /**
   * Blob bytes by where they came from: `local` = sent to clients from blobs
   * already in this node's store; `peers` / `upstream` = fetched for mirror
   * requests from cluster peers / the upstream registry.
   */
  bytes: { local: number, peers: number, upstream: number }
  /** Blob pulls that needed the upstream for at least one piece (no peer had it all). */
  upstreamFallbacks: number
  /** Tag requests answered from the last known resolution because the upstream failed. */
  staleTags: number
  /** Responses aborted because assembled bytes failed verification or the pull failed mid-stream. */
  aborted: number
}

export function newMirrorStats (): MirrorStats {
  return { requests: { base: 0, manifest: 0, blob: 0, other: 0 }, bytes: { local: 0, peers: 0, upstream: 0 }, upstreamFallbacks: 0, staleTags: 0, aborted: 0 }
}

/** The stats as `extra` gauges for agent/metrics.ts `createMetrics`. */
export function mirrorMetrics (stats: () => MirrorStats): Array<{ name: string, help: string, labels?: string[], read: () => Array<{ labels?: Record<string, string>, value: number }> }> {
  return [
    { name: 'bolt_mirror_requests_total', help: 'Registry mirror requests by kind', labels: ['kind'], read: () => Object.entries(stats().requests).map(([kind, value]) => ({ labels: { kind }, value })) },
    { name: 'bolt_mirror_blob_bytes_total', help: 'Registry mirror blob bytes by source (local store, cluster peers, upstream registry)', labels: ['source'], read: () => Object.entries(stats().bytes).map(([source, value]) => ({ labels: { source }, value })) },
    { name: 'bolt_mirror_upstream_fallbacks_total', help: 'Mirror blob pulls that needed the upstream registry', read: () => [{ value: stats().upstreamFallbacks }] },
    { name: 'bolt_mirror_stale_tags_total', help: 'Tags served from the last known resolution while the upstream failed', read: () => [{ value: stats().staleTags }] },
    { name: 'bolt_mirror_aborted_total', help: 'Mirror responses aborted (verification failed or pull failed mid-stream)', read: () => [{ value: stats().aborted }] }
  ]
}
