// Bundles the compiled CLI (dist/agent/cli.js and everything it imports)
// into dist/bundle with esbuild: about a hundred chunks instead of ~1,500
// modules. Node resolves, reads and compiles each module separately, and
// for the agent that was ~0.6 s of CPU per start; every client command paid
// for its own ~200 modules as well. Code splitting keeps the client light:
// a chunk holds only what its dynamic import needs, so `status` still never
// loads libp2p (test/agent/cli-modules.test.ts checks both this bundle and
// the unbundled tree).
//
// bin/bolt-agent.js and the test harness run dist/bundle/cli.js when it is
// newer than dist/agent/cli.js (tsc rewrites every output on each build, so
// a bundle older than that is stale), and dist/agent/cli.js otherwise.
//
// import.meta.url keeps its meaning: each module's own use of it becomes its
// original file's URL, computed from the chunk's place at run time, so
// workers (dns-worker.js, blob-hasher-worker.js …), the dashboard files and
// createRequire still resolve next to the module that names them.
import { build } from 'esbuild'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { dirname, join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outdir = join(root, 'dist', 'bundle')

/**
 * Left to Node's loader: native addons (loaded by path from their package),
 * packages that start workers from files next to their own code (pino's
 * transports), and undici, which the mirror imports lazily on its first
 * upstream fetch.
 */
const EXTERNAL = [
  '@chainsafe/libp2p-quic-linux-*',
  'classic-level',
  'cbor-extract',
  '@libp2p/websockets',
  'pino',
  'pino-pretty',
  'undici'
]

const metaUrl = {
  name: 'per-module-import-meta-url',
  setup (b) {
    b.onLoad({ filter: /\.m?js$/ }, async (args) => {
      const src = await readFile(args.path, 'utf8')
      if (!src.includes('import.meta.url')) return undefined
      const rel = relative(outdir, args.path).split(sep).join('/')
      return { contents: src.replaceAll('import.meta.url', `new URL(${JSON.stringify(rel)}, import.meta.url).href`), loader: 'js' }
    })
  }
}

await rm(outdir, { recursive: true, force: true })
const result = await build({
  entryPoints: [join(root, 'dist', 'agent', 'cli.js')],
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  outdir,
  absWorkingDir: root,
  metafile: true,
  external: EXTERNAL,
  // CommonJS packages inside an ES module bundle still call require() for
  // Node's built-ins.
  banner: { js: "import { createRequire as __boltCreateRequire } from 'node:module'; const require = __boltCreateRequire(import.meta.url);" },
  plugins: [metaUrl],
  logLevel: 'warning'
})
// Which inputs went into which chunk: the module test reads it.
await writeFile(join(outdir, 'meta.json'), JSON.stringify(result.metafile))
if (!process.argv.includes('--quiet')) {
  const outs = Object.values(result.metafile.outputs)
  const bytes = outs.reduce((s, o) => s + o.bytes, 0)
  console.log(`cli bundle: ${outs.length} chunks, ${(bytes / 1024 / 1024).toFixed(1)} MiB, from ${Object.keys(result.metafile.inputs).length} modules, in ${outdir}`)
}
