// The dashboard's login codes and session cookies, alone: single use,
// expiry, signatures, and a cookie parser that takes any header.
import t from 'tap'
import fc from 'fast-check'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CODE_TTL_MS, readCookie, SESSION_KEY_FILE, SESSION_TTL_MS, Sessions } from '../../agent/ui/sessions.js'

t.test('codes are single-use and expire; sessions are signed and expire', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-ui-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  let now = 1_000_000
  const s = new Sessions(dir, () => now)
  t.notOk(s.valid(undefined), 'no key loaded: nothing is valid')
  await s.load()
  t.equal((await stat(join(dir, SESSION_KEY_FILE))).mode & 0o777, 0o600, 'the key file is 0600')

  const a = s.newCode()
  t.ok(s.redeem(a.code), 'a fresh code works')
  t.notOk(s.redeem(a.code), 'once')
  t.notOk(s.redeem('x' + a.code), 'a wrong code does not')
  const b = s.newCode()
  now += CODE_TTL_MS + 1
  t.notOk(s.redeem(b.code), 'an expired code does not')

  const sess = s.newSession()
  t.ok(s.valid(sess.value), 'a minted session is valid')
  const again = new Sessions(dir, () => now)
  await again.load()
  t.ok(again.valid(sess.value), 'and stays valid after a restart (same key file)')
  const otherDir = await mkdtemp(join(tmpdir(), 'bolt-ui-'))
  t.teardown(async () => { await rm(otherDir, { recursive: true, force: true }) })
  const other = new Sessions(otherDir, () => now)
  await other.load()
  t.notOk(other.valid(sess.value), 'another agent\'s key does not accept it')
  const [exp, nonce, mac] = sess.value.split('.')
  t.notOk(s.valid(`${Number(exp) + 1000}.${nonce}.${mac}`), 'a later expiry breaks the signature')
  now += SESSION_TTL_MS + 1
  t.notOk(s.valid(sess.value), 'an expired session is not valid')
})

t.test('fuzz: any cookie header and any session value are judged without throwing', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-ui-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const s = new Sessions(dir)
  await s.load()
  const good = s.newSession().value
  fc.assert(fc.property(fc.string({ maxLength: 300 }), fc.string({ maxLength: 20 }), (header, name) => {
    const v = readCookie(header, name)
    return v === undefined || typeof v === 'string'
  }))
  fc.assert(fc.property(fc.string({ maxLength: 300 }), (v) => v === good || !s.valid(v)))
  // Every one-character change of a good value is refused.
  fc.assert(fc.property(fc.nat({ max: good.length - 1 }), fc.constantFrom(...'0123456789abcdefABCDEF_-.'.split('')), (i, c) => {
    const changed = good.slice(0, i) + c + good.slice(i + 1)
    return changed === good || !s.valid(changed)
  }))
  t.equal(readCookie(`a=1; bolt_ui_80=${good}; b=2`, 'bolt_ui_80'), good, 'the cookie is found among others')
})
