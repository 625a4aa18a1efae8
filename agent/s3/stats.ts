// The S3 endpoint's counters, exported as Prometheus metrics (read when scraped).
import type { MetricSources } from '../metrics.js'

export interface S3Stats {
  /** Requests by operation (ListBuckets, PutObject…) or, for failures, by S3 error code. */
  requests: Map<string, number>
  bytesIn: number
  bytesOut: number
}

export function newS3Stats (): S3Stats {
  return { requests: new Map(), bytesIn: 0, bytesOut: 0 }
}

export function s3Metrics (stats: () => S3Stats | undefined): NonNullable<MetricSources['extra']> {
  return [{
    name: 'bolt_s3_requests_total',
    help: 'S3 requests by operation, or by S3 error code for failed ones',
    labels: ['op'],
    read: () => [...(stats()?.requests ?? new Map<string, number>())].map(([op, value]) => ({ labels: { op }, value }))
  }, {
    name: 'bolt_s3_bytes_total',
    help: 'Object bytes received from (in) and sent to (out) S3 clients',
    labels: ['direction'],
    read: () => [{ labels: { direction: 'in' }, value: stats()?.bytesIn ?? 0 }, { labels: { direction: 'out' }, value: stats()?.bytesOut ?? 0 }]
  }]
}
