// `npm run bench [-- NAME...] [--quick]`: runs performance scenarios one after
// another, writes each report, and prints each figure as its last line.
import { readdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { formatFigures, writeReport, type Scenario } from './report.js'
import { tuneGc } from '../agent/gc-tuning.js'

async function loadScenarios (): Promise<Scenario[]> {
  const dir = dirname(fileURLToPath(import.meta.url))
  const files = (await readdir(dir)).filter(f => f.endsWith('.js') && !['run.js', 'report.js'].includes(f) && !f.startsWith('_'))
  const out: Scenario[] = []
  for (const f of files.sort()) {
    const mod = await import(pathToFileURL(join(dir, f)).href) as { scenario?: Scenario }
    if (mod.scenario !== undefined) out.push(mod.scenario)
  }
  return out
}

async function main (): Promise<void> {
  const args = process.argv.slice(2)
  const quick = args.includes('--quick')
  const names = args.filter(a => !a.startsWith('--'))
  const all = await loadScenarios()
  const unknown = names.filter(n => !all.some(s => s.name === n))
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown scenario ${unknown.join(', ')} (known: ${all.map(s => s.name).join(', ')})\n`)
    process.exit(2)
  }
  const chosen = names.length === 0 ? all : all.filter(s => names.includes(s.name))
  // Nodes run inside this process stand for agents: give them the agent's GC
  // setting (agent processes set it themselves). Each report records it.
  const gcFlags = tuneGc(undefined)
  let failed = false
  for (const s of chosen) {
    process.stdout.write(`# ${s.name}: ${s.description}\n`)
    try {
      const report = await s.run({ quick })
      report.config.benchProcessGcFlags = gcFlags
      const file = await writeReport(report)
      process.stdout.write(`# report: ${file}\n`)
      process.stdout.write(formatFigures(report) + '\n')
    } catch (err) {
      failed = true
      process.stdout.write(`${s.name}: failed: ${(err as Error).message}\n`)
    }
  }
  process.exit(failed ? 1 : 0)
}

await main()
