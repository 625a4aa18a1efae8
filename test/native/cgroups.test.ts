import t from 'tap'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CapsuleCgroup, crunRefusesHybrid, parseCgroupMounts } from '../../native/cgroups.js'

const HYBRID = `25 1 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
30 25 0:27 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,pids
`
const V2 = `35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`

t.test('mountinfo: hybrid, v2, none', async t => {
  const h = parseCgroupMounts(HYBRID)
  t.equal(h.mode, 'hybrid')
  t.same(h.v1, { 'name=systemd': '/sys/fs/cgroup/systemd', cpu: '/sys/fs/cgroup/cpu,cpuacct', cpuacct: '/sys/fs/cgroup/cpu,cpuacct', memory: '/sys/fs/cgroup/memory', pids: '/sys/fs/cgroup/pids' })
  t.equal(h.unified, '/sys/fs/cgroup/unified')
  t.match(parseCgroupMounts(V2), { mode: 'v2', v1: {}, unified: '/sys/fs/cgroup' })
  t.equal(parseCgroupMounts('').mode, 'none')
})

t.test('crun needs the mount namespace workaround only on a hybrid host whose cgroup2 has controllers', async t => {
  t.equal(crunRefusesHybrid({ mode: 'hybrid', unifiedControllers: [] }), false, 'systemd hybrid: every controller on v1, crun runs as is')
  t.equal(crunRefusesHybrid({ mode: 'hybrid', unifiedControllers: ['hugetlb'] }), true, 'a controller left on v2: crun refuses')
  t.equal(crunRefusesHybrid({ mode: 'v2', unifiedControllers: ['cpu', 'memory'] }), false)
  t.equal(crunRefusesHybrid({ mode: 'v1', unifiedControllers: [] }), false)
})

t.test('cgroup v2 parent: controllers enabled down the path, limit, stats, OOM count (fixture tree)', async t => {
  const root = await mkdtemp(join(tmpdir(), 'bolt-cg2-'))
  t.teardown(async () => { await rm(root, { recursive: true, force: true }) })
  const cg = new CapsuleCgroup({ mode: 'v2', v1: {}, unified: root, unifiedControllers: ['cpu', 'memory', 'pids', 'io'] }, '/bolt/abc/web')
  await cg.create(128 * 1024 * 1024)
  t.equal(await readFile(join(root, 'cgroup.subtree_control'), 'utf8'), '+cpu +memory +pids')
  t.equal(await readFile(join(root, 'bolt/abc/cgroup.subtree_control'), 'utf8'), '+cpu +memory +pids')
  t.equal(await readFile(join(root, 'bolt/abc/web/memory.max'), 'utf8'), String(128 * 1024 * 1024))
  t.equal(await readFile(join(root, 'bolt/abc/web/memory.swap.max'), 'utf8'), '0')
  const d = join(root, 'bolt/abc/web')
  await writeFile(join(d, 'cpu.stat'), 'usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n')
  await writeFile(join(d, 'memory.current'), '4096000\n')
  await writeFile(join(d, 'memory.peak'), '8192000\n')
  await writeFile(join(d, 'pids.current'), '3\n')
  await writeFile(join(d, 'memory.events'), 'low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n')
  t.same(await cg.stats(), { cpuNanos: 2_500_000, memoryBytes: 4096000, memoryPeakBytes: 8192000, memoryLimitBytes: 128 * 1024 * 1024, pids: 3, oomKills: 1 })
  t.equal(await cg.memoryLimitHit(), true)
  t.equal(cg.leafPath, '/bolt/abc/web/capsule')
})

t.test('cgroup v1 stats read each controller hierarchy (fixture tree)', async t => {
  const root = await mkdtemp(join(tmpdir(), 'bolt-cg1-'))
  t.teardown(async () => { await rm(root, { recursive: true, force: true }) })
  const layout = { mode: 'v1' as const, v1: { memory: join(root, 'memory'), cpuacct: join(root, 'cpuacct'), pids: join(root, 'pids') }, unifiedControllers: [] }
  const cg = new CapsuleCgroup(layout, '/bolt/x/db')
  for (const c of ['memory', 'cpuacct', 'pids']) await mkdir(join(root, c, 'bolt/x/db'), { recursive: true })
  await cg.create(64 * 1024 * 1024)
  const m = join(root, 'memory/bolt/x/db')
  t.equal(await readFile(join(m, 'memory.limit_in_bytes'), 'utf8'), String(64 * 1024 * 1024))
  await writeFile(join(m, 'memory.usage_in_bytes'), '1000\n')
  await writeFile(join(m, 'memory.max_usage_in_bytes'), String(64 * 1024 * 1024 - 4096))
  await writeFile(join(m, 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n')
  await writeFile(join(root, 'cpuacct/bolt/x/db/cpuacct.usage'), '123456\n')
  await writeFile(join(root, 'pids/bolt/x/db/pids.current'), '2\n')
  t.same(await cg.stats(), { cpuNanos: 123456, memoryBytes: 1000, memoryPeakBytes: 64 * 1024 * 1024 - 4096, memoryLimitBytes: 64 * 1024 * 1024, pids: 2, oomKills: 0 })
  t.equal(await cg.memoryLimitHit(), true, 'peak at the limit')
})
