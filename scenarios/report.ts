// Shared shape of a scenario's result: every scenario writes
// scenarios/reports/<name>.json and prints one last line `<name>: ...`.
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export interface ScenarioReport {
  name: string
  /** Measured numbers; ratios are named `<thing>Ratio` and are against a baseline measured in the same run. */
  figures: Record<string, number | string | boolean | null>
  /** The goal the issue sets, in words, e.g. "p50Ratio <= 1.3". */
  goal: string
  /** Whether the goal was met in this run. */
  met: boolean | null
  config: Record<string, unknown>
}

export interface Scenario {
  name: string
  description: string
  run: (opts: { quick: boolean }) => Promise<ScenarioReport>
}

/** The repo root, found from this file's place in dist/scenarios or scenarios/. */
export function repoRoot (): string {
  const here = dirname(fileURLToPath(import.meta.url))
  return here.endsWith('/dist/scenarios') ? join(here, '..', '..') : join(here, '..')
}

export async function writeReport (report: ScenarioReport): Promise<string> {
  const file = join(repoRoot(), 'scenarios', 'reports', `${report.name}.json`)
  await mkdir(dirname(file), { recursive: true })
  await writeFile(file, JSON.stringify(report, null, 2) + '\n')
  return file
}

export function formatFigures (report: ScenarioReport): string {
  const parts = Object.entries(report.figures).map(([k, v]) => `${k}=${typeof v === 'number' ? Number(v.toPrecision(4)) : String(v)}`)
  const verdict = report.met === null ? '' : report.met ? ' (goal met)' : ' (goal NOT met)'
  return `${report.name}: ${parts.join(' ')} — goal ${report.goal}${verdict}`
}

export function percentile (values: number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[idx] as number
}
