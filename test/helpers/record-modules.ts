// A module hook for tests of what a process loads: run node with
// `--import <this file>` and BOLT_RECORD_MODULES=FILE, and at exit FILE holds
// every module URL the process resolved (ESM imports and CJS requires), one a
// line, then Node's own internal modules it loaded as `node-internal:NAME`
// (undici behind fetch, http2, zlib…, from process.moduleLoadList).
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
  process.on('exit', () => {
    const internal = (process as unknown as { moduleLoadList: string[] }).moduleLoadList.filter(m => m.startsWith('NativeModule ')).map(m => `node-internal:${m.slice('NativeModule '.length)}`)
    writeFileSync(out, [...seen, ...internal].join('\n') + '\n')
  })
}
