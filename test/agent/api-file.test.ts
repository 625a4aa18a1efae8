// DATA/api.json, read by every client command: checked by hand (zod costs a
// client command more than Node's start), held here to the zod schema it
// replaces, and a damaged file is one clear error, never a raw SyntaxError.
import t from 'tap'
import fc from 'fast-check'
import { z } from 'zod'
import { ApiFileDamagedError, MIN_API_TOKEN_LENGTH, parseApiFile } from '../../agent/api/client.js'

/** The schema api.json was checked with before: what an agent writes must pass both. */
const ZodApiFile = z.object({ url: z.string().url(), token: z.string().min(MIN_API_TOKEN_LENGTH), pid: z.number().int().optional() })

const FILE = '/data/api.json'

t.test('what an agent writes is accepted as is', async t => {
  const written = { url: 'http://127.0.0.1:7070', token: 'a'.repeat(43), pid: 4242 }
  t.same(parseApiFile(JSON.stringify(written) + '\n', FILE), written)
  t.same(parseApiFile(JSON.stringify({ url: 'http://[::1]:7070', token: 'b'.repeat(16) }), FILE), { url: 'http://[::1]:7070', token: 'b'.repeat(16) })
})

t.test('a damaged file is an ApiFileDamagedError naming the file and the fault', async t => {
  const cases: Array<[string, RegExp]> = [
    ['{"url":"http://127.0.0.1:7070","tok', /not JSON/],
    ['', /empty/],
    ['[]', /not a JSON object/],
    ['null', /not a JSON object/],
    ['{"url":"ftp://x","token":"' + 'a'.repeat(20) + '"}', /no http\(s\) "url"/],
    ['{"url":"http://127.0.0.1:1","token":"short"}', /"token" of at least 16/],
    ['{"url":"http://127.0.0.1:1","token":"' + 'a'.repeat(20) + '","pid":1.5}', /"pid" is not an integer/]
  ]
  for (const [text, why] of cases) {
    let err: unknown
    try { parseApiFile(text, FILE) } catch (e) { err = e }
    const what = JSON.stringify(text).slice(0, 40)
    t.ok(err instanceof ApiFileDamagedError && err.name === 'ApiFileDamagedError', `${what}: an ApiFileDamagedError`)
    t.match((err as Error).message, why, `${what}: says ${String(why)}`)
    t.ok((err as Error).message.startsWith(`${FILE} is damaged (`) && !(err as Error).message.includes('\n'), `${what}: one line naming the file`)
  }
})

t.test('fuzzed: anything the hand check accepts, zod accepts with the same value; nothing else escapes', async t => {
  const field = fc.oneof(fc.string(), fc.webUrl(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constant(undefined))
  const obj = fc.record({ url: fc.oneof(fc.webUrl(), field), token: fc.oneof(fc.string({ minLength: 10, maxLength: 40 }), field), pid: fc.oneof(fc.integer(), field) }, { requiredKeys: [] })
  const text = fc.oneof(obj.map(o => JSON.stringify(o)), fc.string(), fc.json(), obj.map(o => JSON.stringify(o)).chain(s => fc.nat(s.length).map(n => s.slice(0, n))))
  fc.assert(fc.property(text, s => {
    let mine
    try {
      mine = parseApiFile(s, FILE)
    } catch (err) {
      if (!(err instanceof ApiFileDamagedError)) throw err
      return
    }
    const theirs = ZodApiFile.safeParse(JSON.parse(s))
    if (!theirs.success) throw new Error(`accepted what zod rejects: ${s}`)
    if (JSON.stringify(mine) !== JSON.stringify(theirs.data)) throw new Error(`a different value than zod's: ${s}`)
  }), { numRuns: 3000 })
  // The valid ones really are accepted (the property above would hold for a check that rejects all).
  fc.assert(fc.property(fc.webUrl({ validSchemes: ['http', 'https'] }), fc.string({ minLength: 16 }), fc.option(fc.nat(), { nil: undefined }), (url, token, pid) => {
    const v = parseApiFile(JSON.stringify({ url, token, pid }), FILE)
    return v.url === url && v.token === token && v.pid === pid
  }), { numRuns: 1000 })
})
