// Bundles the dashboard (ui/) into dist/ui-web: app.js, app.css and
// index.html, served by the agent (agent/ui/dashboard.ts). Preact, htm and
// uPlot are bundled here, at build time: nothing is fetched at run time.
// Prints the gzipped size; fails above the budget (150 KB gzipped).
import { build } from 'esbuild'
import { copyFile, mkdir, readFile, readdir } from 'node:fs/promises'
import { gzipSync } from 'node:zlib'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const out = join(root, 'dist', 'ui-web')
const BUDGET = 150 * 1024

await mkdir(out, { recursive: true })
await build({
  entryPoints: [join(root, 'ui', 'app.js')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  outfile: join(out, 'app.js'),
  legalComments: 'none',
  logLevel: 'warning'
})
await copyFile(join(root, 'ui', 'index.html'), join(out, 'index.html'))
let total = 0
const sizes = []
for (const f of await readdir(out)) {
  const gz = gzipSync(await readFile(join(out, f))).length
  total += gz
  sizes.push(`${f} ${(gz / 1024).toFixed(1)} KB`)
}
if (process.argv.includes('--quiet') === false) console.log(`dashboard bundle: ${(total / 1024).toFixed(1)} KB gzipped (${sizes.join(', ')}) in ${out}`)
if (total > BUDGET) { console.error(`dashboard bundle over budget: ${(total / 1024).toFixed(1)} KB gzipped > ${BUDGET / 1024} KB`); process.exit(1) }
