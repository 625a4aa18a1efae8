// A module hook for tests of what a process loads: run node with
// `--import <this file>` and BOLT_RECORD_MODULES=FILE, and at exit FILE holds
// every module URL the process resolved (ESM imports and CJS requires), one a line.
import { writeFileSync } from 'node:fs'
import { registerHooks } from 'node:module'

const out = process.env.BOLT_RECORD_MODULES
if (out !== undefined && out !== '') {
  const seen = new Set<string>()
  registerHooks({
    resolve (specifier, context, nextResolve) {
      const r = nextResolve(specifier, context)
      seen.add(r.url)
      return r
    }
  })
  process.on('exit', () => { writeFileSync(out, [...seen].join('\n') + '\n') })
}
