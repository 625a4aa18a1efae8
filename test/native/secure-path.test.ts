import t from 'tap'
import fc from 'fast-check'
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { entryComponents, resolveInRoot, assertSymlinkInside } from '../../native/image/secure-path.js'
import { OciRuntimeDriver } from '../../native/oci/driver.js'

t.test('resolveInRoot never leaves the root, whatever the path and symlinks', async t => {
  const base = await mkdtemp(join(tmpdir(), 'bolt-securepath-'))
  t.teardown(async () => { await rm(base, { recursive: true, force: true }) })
  const root = join(base, 'root')
  await mkdir(join(root, 'a/b'), { recursive: true })
  // Hostile links as a layer might have left them (created directly, bypassing the extractor's checks).
  await symlink('../../../..', join(root, 'a/up'))
  await symlink('/', join(root, 'a/abs'))
  await symlink('/../../etc', join(root, 'a/b/etc'))
  await symlink('loop2', join(root, 'loop1'))
  await symlink('loop1', join(root, 'loop2'))
  const part = fc.constantFrom('a', 'b', 'up', 'abs', 'etc', '..', '.', 'loop1', 'x', '')
  await fc.assert(fc.asyncProperty(fc.array(part, { maxLength: 12 }), fc.boolean(), async (parts, followLast) => {
    let host: string
    try {
      host = await resolveInRoot(root, parts, followLast)
    } catch (err) {
      return (err as Error).name === 'SymlinkEscapeError' // the loop
    }
    const rel = relative(root, host)
    return rel === '' || (!rel.startsWith('..') && !rel.startsWith('/'))
  }), { numRuns: 500 })
  t.pass('500 random paths resolved inside the root')
})

t.test('entry names with .. are refused, others normalised', async t => {
  t.same(entryComponents('./usr//bin/./sh'), ['usr', 'bin', 'sh'])
  t.same(entryComponents('/etc/passwd'), ['etc', 'passwd'])
  t.throws(() => entryComponents('a/../../b'), { name: 'PathTraversalError' })
  t.throws(() => entryComponents('a\0b'), { name: 'PathTraversalError' })
  fc.assert(fc.property(fc.array(fc.constantFrom('a', '..', '.', '', 'b'), { maxLength: 8 }), parts => {
    const name = parts.join('/')
    try {
      const c = entryComponents(name)
      return !c.includes('..') && !c.includes('.') && !c.includes('')
    } catch (err) {
      return (err as Error).name === 'PathTraversalError' && parts.includes('..')
    }
  }))
  t.doesNotThrow(() => { assertSymlinkInside(['usr', 'bin', 'sh'], '../../bin/busybox') })
  t.doesNotThrow(() => { assertSymlinkInside(['bin', 'sh'], '/bin/busybox') })
  t.throws(() => { assertSymlinkInside(['bin', 'sh'], '../../etc') }, { name: 'SymlinkEscapeError' })
})

t.test('driver argv: crun on a hybrid cgroup host runs in a private mount namespace without the v2 mount', async t => {
  const crun = new OciRuntimeDriver('crun', '/usr/bin/crun', { stateRoot: '/d/crun-state', hybridCgroupWorkaround: true })
  const argv = crun.runArgv('web', '/d/capsules/web', '/d/capsules/web/pid')
  t.same(argv.slice(0, 4), ['unshare', '-m', '--propagation', 'private'])
  t.match(argv[6], /umount \/sys\/fs\/cgroup\/unified/)
  t.same(argv.slice(7), ['/usr/bin/crun', '--root', '/d/crun-state', 'run', '--bundle', '/d/capsules/web', '--pid-file', '/d/capsules/web/pid', 'web'])
  const runc = new OciRuntimeDriver('runc', '/usr/sbin/runc', { stateRoot: '/d/runc-state', rootless: true })
  t.match(argv[6], /^umask 022; /, 'the runtime runs with umask 022, not the agent\'s 077')
  const runcArgv = runc.argv(['state', 'web'])
  t.same(runcArgv.slice(0, 2), ['/bin/sh', '-c'])
  t.match(runcArgv[2], /^umask 022; exec "\$0" "\$@"$/)
  t.same(runcArgv.slice(3), ['/usr/sbin/runc', '--root', '/d/runc-state', '--rootless', 'true', 'state', 'web'])
})
