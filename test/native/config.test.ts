import t from 'tap'
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildRuntimeConfig, parseRunSpec, type CapsuleRunSpecInput } from '../../native/index.js'
import { DEFAULT_CAPABILITIES, defaultSeccompProfile } from '../../native/bundle/seccomp.js'
import { effectiveCapabilities, processArgs } from '../../native/bundle/config.js'
import type { ImageConfig } from '../../native/image/layout.js'

const IMAGE: ImageConfig = {
  rootfs: { type: 'layers', diff_ids: [] },
  config: { Env: ['PATH=/bin', 'LANG=C.UTF-8'], Entrypoint: ['/entry'], Cmd: ['--serve'], WorkingDir: '/app', User: '1000:1000' }
}
const ID = `sha256:${'b'.repeat(64)}`
const spec = (s: Partial<CapsuleRunSpecInput> = {}): ReturnType<typeof parseRunSpec> => parseRunSpec({ name: 'web-1', image: ID, ...s })

t.test('process: args, env, cwd, user from image and spec', async t => {
  const c = await buildRuntimeConfig({ spec: spec({ env: { LANG: 'en_US.UTF-8', X: '1' } }), image: IMAGE, rootfs: 'rootfs', volumeRoots: [] })
  t.same(c.process.args, ['/entry', '--serve'])
  t.same(c.process.env, ['PATH=/bin', 'LANG=en_US.UTF-8', 'HOSTNAME=web-1', 'X=1'])
  t.equal(c.process.cwd, '/app')
  t.same(c.process.user, { uid: 1000, gid: 1000 })
  t.equal(c.hostname, 'web-1')
  t.equal(c.process.noNewPrivileges, true)
  t.same(processArgs(spec({ args: ['--debug'] }), IMAGE), ['/entry', '--debug'], 'args replace Cmd')
  t.same(processArgs(spec({ entrypoint: ['/bin/sh'] }), IMAGE), ['/bin/sh'], 'an entrypoint override drops Cmd')
  t.throws(() => processArgs(spec({ entrypoint: [], args: [] }), IMAGE), { name: 'InvalidSpecError' })
  const c2 = await buildRuntimeConfig({ spec: spec({ user: '0', cwd: '/', hostname: 'h' }), image: IMAGE, rootfs: 'rootfs', volumeRoots: [] })
  t.same(c2.process.user, { uid: 0, gid: 0 })
  t.equal(c2.hostname, 'h')
})

t.test('mounts, namespaces, masked paths, resources', async t => {
  const c = await buildRuntimeConfig({
    spec: spec({ network: 'private', readOnlyRootfs: true, resources: { cpus: 1.5, cpuShares: 512, memoryBytes: 256 * 1024 * 1024, pids: 100 }, rlimits: [{ type: 'RLIMIT_NOFILE', soft: 64, hard: 128 }] }),
    image: IMAGE,
    rootfs: '/data/rootfs',
    cgroupsPath: '/bolt/x/web-1/capsule',
    volumeRoots: []
  })
  t.same(c.mounts.map(m => m.destination), ['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/tmp', '/sys/fs/cgroup'])
  t.ok(c.mounts.find(m => m.destination === '/sys')?.options?.includes('ro'), 'sysfs read-only')
  t.same(c.linux.namespaces.map(n => n.type), ['pid', 'mount', 'ipc', 'uts', 'network'])
  t.same(c.root, { path: '/data/rootfs', readonly: true })
  t.same(c.linux.resources?.cpu, { quota: 150000, period: 100000, shares: 512 })
  t.same(c.linux.resources?.memory, { limit: 256 * 1024 * 1024, swap: 256 * 1024 * 1024 })
  t.same(c.linux.resources?.pids, { limit: 100 })
  t.same(c.linux.resources?.devices, [{ allow: false, access: 'rwm' }])
  t.same(c.process.rlimits, [{ type: 'RLIMIT_NOFILE', soft: 64, hard: 128 }])
  t.ok(c.linux.maskedPaths?.includes('/proc/kcore'))
  t.ok(c.linux.readonlyPaths?.includes('/proc/sys'))
  const onParent = await buildRuntimeConfig({ spec: spec({ resources: { memoryBytes: 64 * 1024 * 1024 } }), image: IMAGE, rootfs: 'r', cgroupsPath: '/x', memoryOnParent: true, volumeRoots: [] })
  t.equal(onParent.linux.resources?.memory, undefined, 'memory limit left to the parent cgroup')
  const host = await buildRuntimeConfig({ spec: spec(), image: IMAGE, rootfs: 'r', volumeRoots: [] })
  t.notOk(host.linux.namespaces.some(n => n.type === 'network'), 'host network by default')
  const joined = await buildRuntimeConfig({ spec: spec({ network: { netnsPath: '/var/run/netns/blue' } }), image: IMAGE, rootfs: 'r', volumeRoots: [] })
  t.same(joined.linux.namespaces.find(n => n.type === 'network'), { type: 'network', path: '/var/run/netns/blue' })
})

t.test('capabilities and seccomp like Docker defaults', async t => {
  const c = await buildRuntimeConfig({ spec: spec(), image: IMAGE, rootfs: 'r', volumeRoots: [] })
  t.same(c.process.capabilities.bounding, [...DEFAULT_CAPABILITIES].sort())
  t.notOk(DEFAULT_CAPABILITIES.includes('CAP_NET_RAW'), 'Docker\'s set without NET_RAW')
  t.notOk(c.process.capabilities.bounding.includes('CAP_SYS_ADMIN'))
  t.same(effectiveCapabilities(['CAP_NET_ADMIN'], ['CAP_NET_RAW']).includes('CAP_NET_RAW'), false)
  t.same(effectiveCapabilities(['CAP_KILL'], ['ALL']), ['CAP_KILL'])
  const p = defaultSeccompProfile(DEFAULT_CAPABILITIES)
  t.equal(p.defaultAction, 'SCMP_ACT_ERRNO')
  const allowed = new Set(p.syscalls.filter(s => s.action === 'SCMP_ACT_ALLOW' && s.args === undefined).flatMap(s => s.names))
  for (const ok of ['read', 'write', 'openat', 'execve', 'futex', 'chroot']) t.ok(allowed.has(ok), `${ok} allowed`)
  for (const no of ['mount', 'unshare', 'setns', 'kexec_load', 'init_module', 'bpf', 'ptrace_not_a_syscall']) t.notOk(allowed.has(no), `${no} denied`)
  t.match(p.syscalls.find(s => s.names.includes('clone3')), { action: 'SCMP_ACT_ERRNO', errnoRet: 38 }, 'clone3 says ENOSYS so libc falls back to clone')
  t.match(p.syscalls.find(s => s.names.includes('clone')), { args: [{ op: 'SCMP_CMP_MASKED_EQ', value: 0x7E020000 }] })
  const admin = defaultSeccompProfile([...DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN'])
  t.ok(admin.syscalls.some(s => s.action === 'SCMP_ACT_ALLOW' && s.names.includes('mount')), 'CAP_SYS_ADMIN opens mount')
})

t.test('volumes: only under declared roots, symlinks resolved', async t => {
  const base = await mkdtemp(join(tmpdir(), 'bolt-vol-'))
  t.teardown(async () => { await rm(base, { recursive: true, force: true }) })
  await mkdir(join(base, 'allowed/data'), { recursive: true })
  await mkdir(join(base, 'secret'))
  await symlink(join(base, 'secret'), join(base, 'allowed/sneaky'))
  const roots = [join(base, 'allowed')]
  const c = await buildRuntimeConfig({ spec: spec({ volumes: [{ hostPath: join(base, 'allowed/data'), containerPath: '/data', readOnly: true }] }), image: IMAGE, rootfs: 'r', volumeRoots: roots })
  t.match(c.mounts.find(m => m.destination === '/data'), { type: 'bind', source: join(base, 'allowed/data'), options: ['rbind', 'rprivate', 'nosuid', 'nodev', 'ro'] })
  await t.rejects(buildRuntimeConfig({ spec: spec({ volumes: [{ hostPath: join(base, 'secret'), containerPath: '/s' }] }), image: IMAGE, rootfs: 'r', volumeRoots: roots }), { name: 'VolumeNotAllowedError' })
  await t.rejects(buildRuntimeConfig({ spec: spec({ volumes: [{ hostPath: join(base, 'allowed/sneaky'), containerPath: '/s' }] }), image: IMAGE, rootfs: 'r', volumeRoots: roots }), { name: 'VolumeNotAllowedError' }, 'a symlink out of the root is caught')
  await t.rejects(buildRuntimeConfig({ spec: spec({ volumes: [{ hostPath: join(base, 'allowedX'), containerPath: '/s' }] }), image: IMAGE, rootfs: 'r', volumeRoots: roots }), { name: 'VolumeNotAllowedError' })
  await t.rejects(buildRuntimeConfig({ spec: spec({ volumes: [{ hostPath: '/etc', containerPath: '/e' }] }), image: IMAGE, rootfs: 'r', volumeRoots: [] }), { name: 'VolumeNotAllowedError' }, 'no roots declared: no volumes')
})

t.test('rootless: user namespace with uid/gid maps, no cgroup mount, host sysfs bound', async t => {
  const c = await buildRuntimeConfig({
    spec: spec(),
    image: IMAGE,
    rootfs: 'r',
    volumeRoots: [],
    rootless: { uid: 1000, gid: 1000, subuid: { start: 100000, count: 65536 }, subgid: { start: 100000, count: 65536 } }
  })
  t.ok(c.linux.namespaces.some(n => n.type === 'user'))
  t.same(c.linux.uidMappings, [{ containerID: 0, hostID: 1000, size: 1 }, { containerID: 1, hostID: 100000, size: 65536 }])
  t.same(c.linux.gidMappings, [{ containerID: 0, hostID: 1000, size: 1 }, { containerID: 1, hostID: 100000, size: 65536 }])
  t.notOk(c.mounts.some(m => m.destination === '/sys/fs/cgroup'))
  t.match(c.mounts.find(m => m.destination === '/sys'), { type: 'none', source: '/sys' })
  t.notOk(c.mounts.find(m => m.destination === '/dev/pts')?.options?.includes('gid=5'), 'no gid=5 (unmapped in the userns)')
  t.equal(c.linux.resources, undefined, 'no cgroup limits without delegation')
  const alone = await buildRuntimeConfig({ spec: spec({ network: 'private' }), image: IMAGE, rootfs: 'r', volumeRoots: [], rootless: { uid: 1000, gid: 1000 } })
  t.same(alone.linux.uidMappings, [{ containerID: 0, hostID: 1000, size: 1 }], 'without subuids only the user maps')
  t.match(alone.mounts.find(m => m.destination === '/sys'), { type: 'sysfs' }, 'own netns: a fresh sysfs')
})

t.test('spec validation names the field', async t => {
  t.throws(() => parseRunSpec({ name: '../x', image: ID }), { name: 'InvalidSpecError', message: /name/ })
  t.throws(() => parseRunSpec({ name: 'a', image: 'busybox' }), { name: 'InvalidSpecError', message: /image/ })
  t.throws(() => parseRunSpec({ name: 'a', image: ID, resources: { memoryBytes: 10 } }), { name: 'InvalidSpecError', message: /resources\.memoryBytes/ })
  t.throws(() => parseRunSpec({ name: 'a', image: ID, volumes: [{ hostPath: 'rel', containerPath: '/x' }] }), { name: 'InvalidSpecError', message: /volumes\.0\.hostPath/ })
})
