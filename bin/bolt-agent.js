#!/usr/bin/env node
// Launcher: bolt-agent needs Node >= 22 (libp2p 3 uses Promise.withResolvers).
// In a checkout, `npm install` brings Node 24 through the `node` package and
// npm/npx put it first on PATH; this launcher re-executes with it if an older
// node started us anyway.
import { existsSync, statSync } from 'node:fs'
import * as nodeModule from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const major = Number(process.versions.node.split('.')[0])
if (major < 22) {
  const candidates = [join(here, '..', 'node_modules', 'node', 'bin', 'node'), join(here, '..', '..', 'node', 'bin', 'node')]
  const node24 = candidates.find(p => existsSync(p))
  if (node24 === undefined) {
    process.stderr.write(`bolt-agent needs Node.js 22 or newer (this is ${process.version}); install it, or run through npx in a checkout after npm install\n`)
    process.exit(1)
  }
  const { spawnSync } = await import('node:child_process')
  const r = spawnSync(node24, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' })
  process.exit(r.status ?? (r.signal !== null ? 128 : 1))
}
const unbundled = join(here, '..', 'dist', 'agent', 'cli.js')
if (!existsSync(unbundled)) {
  process.stderr.write('bolt-agent is not built: run `npm install` (or `npm run build`) in the checkout\n')
  process.exit(1)
}
// The bundle (scripts/build-bundle.mjs) starts in a fraction of the CPU;
// tsc rewrites every file it emits, so a bundle older than the CLI it was
// built from is stale and the compiled tree runs instead.
const bundled = join(here, '..', 'dist', 'bundle', 'cli.js')
const fresh = existsSync(bundled) && statSync(bundled).mtimeMs >= statSync(unbundled).mtimeMs
const cli = fresh ? bundled : unbundled
// V8's code cache on disk (Node >= 22.1; under the OS temp dir unless
// NODE_COMPILE_CACHE says where): a client command then skips compiling the
// CLI, commander and the HTTP client, a third of its start. Not every Node
// has it, hence the namespace import.
nodeModule.enableCompileCache?.()
await import(new URL(`file://${cli}`).href)
