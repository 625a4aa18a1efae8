import t from 'tap'
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  applyContainerEdits, buildRuntimeConfig, CdiRegistry, discoverGpus, ensureCdiSpecs, gamingEdits, generateCdiSpecs,
  createRuntime, detectRuntimes, gpuReport, nodeResources, parseRunSpec, readCdiSpecs, type OciSpec
} from '../../native/index.js'
import { busyboxImage } from './image-fixture.js'
import type { ImageConfig } from '../../native/image/layout.js'

const here = dirname(fileURLToPath(import.meta.url))
/** Fixtures live in the source tree (tests run from dist/test/native). */
const fixtures = join(here, '..', '..', '..', 'test', 'fixtures', 'gpu')
const smiCsv = async (): Promise<string> => await readFile(join(fixtures, 'nvidia', 'nvidia-smi.csv'), 'utf8')

async function copyFixture (t: { teardown: (fn: () => Promise<void>) => void }, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `bolt-gpu-${name}-`))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await cp(join(fixtures, name), dir, { recursive: true })
  return dir
}

const image: ImageConfig = { rootfs: { type: 'layers', diff_ids: [] }, config: { Cmd: ['sh'] } }
async function baseConfig (): Promise<OciSpec> {
  return await buildRuntimeConfig({ spec: parseRunSpec({ name: 'g', image: `sha256:${'a'.repeat(64)}` }), image, rootfs: 'rootfs', cgroupsPath: '/bolt/g/capsule', volumeRoots: [] })
}

t.test('NVIDIA: procfs plus nvidia-smi', async t => {
  const gpus = await discoverGpus({ root: join(fixtures, 'nvidia'), nvidiaSmi: async () => await smiCsv() })
  t.equal(gpus.length, 2)
  t.match(gpus[0], { vendor: 'nvidia', model: 'NVIDIA H100 80GB HBM3', index: 0, minor: 0, memoryBytes: 81559 * 1024 * 1024, uuid: 'GPU-6f3a1c2e-9b1d-4c55-8e7a-0d2f4b1a9c11', pciBusId: '18:00.0', drmCard: '/dev/dri/card0', renderNode: '/dev/dri/renderD128' })
  t.match(gpus[1], { index: 1, pciBusId: '2a:00.0', renderNode: '/dev/dri/renderD129', memoryBytes: 81559 * 1024 * 1024 })
  const noSmi = await discoverGpus({ root: join(fixtures, 'nvidia') })
  t.equal(noSmi[0]?.memoryBytes, null, 'without nvidia-smi the memory is unknown')
  t.equal(noSmi[0]?.model, 'NVIDIA H100 80GB HBM3', 'the model comes from procfs')
})

t.test('AMD and Intel from DRM sysfs', async t => {
  const amd = await discoverGpus({ root: join(fixtures, 'amd') })
  t.equal(amd.length, 2, 'connector entries are not GPUs')
  t.match(amd[0], { vendor: 'amd', model: 'AMD Instinct MI210', memoryBytes: 68702699520, index: 0, drmCard: '/dev/dri/card0', renderNode: '/dev/dri/renderD128', uuid: 'a3c2b1e0f1d2c3b4' })
  const intel = await discoverGpus({ root: join(fixtures, 'intel') })
  t.match(intel, [{ vendor: 'intel', model: 'Intel Arc A770', memoryBytes: null, index: 0, renderNode: '/dev/dri/renderD128' }])
  t.same(await discoverGpus({ root: join(fixtures, 'does-not-exist') }), [], 'no GPU: empty list')
})

t.test('nodeResources reports vendor, model, memory and index', async t => {
  const r = await nodeResources({ root: join(fixtures, 'amd') })
  t.ok(r.cpus > 0)
  t.ok(r.memoryBytes > 0)
  t.same(r.gpus, [{ vendor: 'amd', model: 'AMD Instinct MI210', memoryBytes: 68702699520, index: 0 }, { vendor: 'amd', model: 'AMD Instinct MI210', memoryBytes: 68702699520, index: 1 }])
})

t.test('an existing nvidia-ctk YAML spec is read and its edits applied', async t => {
  const specs = await readCdiSpecs({ root: join(fixtures, 'nvidia') })
  t.equal(specs.length, 1)
  const reg = new CdiRegistry(specs)
  t.same(reg.deviceNames, ['nvidia.com/gpu=0', 'nvidia.com/gpu=1', 'nvidia.com/gpu=all'])
  const { devices, edits } = reg.resolve(1, new Set(['nvidia.com/gpu=0']))
  t.same(devices, ['nvidia.com/gpu=1'], 'a GPU in use is skipped')
  const config = await baseConfig()
  await applyContainerEdits(config, edits)
  t.same(config.linux.devices?.map(d => d.path), ['/dev/nvidiactl', '/dev/nvidia-uvm', '/dev/nvidia1'])
  t.ok(config.linux.resources?.devices?.some(r => r.allow && r.major === 195 && r.minor === 1 && r.access === 'rwm'), 'cgroup allows the GPU')
  t.ok(config.linux.resources?.devices?.[0]?.allow === false, 'still deny-all first')
  t.ok(config.process.env.includes('NVIDIA_VISIBLE_DEVICES=void'))
  t.ok(config.mounts.some(m => m.destination === '/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15' && m.options?.includes('ro')))
  t.equal(config.hooks?.createContainer?.[0]?.path, '/usr/bin/nvidia-cdi-hook')
  t.throws(() => reg.resolve(3, new Set()), { name: 'GpuUnavailableError' })
  t.throws(() => reg.resolve(['nvidia.com/gpu=7'], new Set()), { name: 'GpuUnavailableError' })
})

t.test('a spec is generated when none exists, and only then', async t => {
  const root = await copyFixture(t, 'amd')
  const gpus = await discoverGpus({ root })
  const written = await ensureCdiSpecs(gpus, { root })
  t.same(written, [join(root, 'var/run/cdi/bolt-amd.json')])
  t.same(await ensureCdiSpecs(gpus, { root }), [], 'second call finds the spec')
  const reg = new CdiRegistry(await readCdiSpecs({ root }))
  t.same(reg.deviceNames, ['amd.com/gpu=all', 'amd.com/gpu=gpu0', 'amd.com/gpu=gpu1'])
  const { edits } = reg.resolve(['amd.com/gpu=gpu1'], new Set())
  t.same(edits.deviceNodes?.map(d => [d.path, d.major, d.minor]), [['/dev/kfd', 235, 0], ['/dev/dri/card1', 226, 1], ['/dev/dri/renderD129', 226, 129]])
  const all = reg.resolve(['amd.com/gpu=all'], new Set()).edits
  t.equal(all.deviceNodes?.length, 5, 'all: kfd + two cards + two render nodes')

  const nv = await generateCdiSpecs(await discoverGpus({ root: join(fixtures, 'nvidia'), nvidiaSmi: async () => await smiCsv() }), { root: join(fixtures, 'nvidia') })
  t.equal(nv[0]?.kind, 'nvidia.com/gpu')
  t.same(nv[0]?.devices.map(d => d.name), ['gpu0', 'gpu1', 'all'])
  t.same(nv[0]?.containerEdits?.deviceNodes?.map(d => d.path), ['/dev/nvidiactl', '/dev/nvidia-modeset', '/dev/nvidia-uvm', '/dev/nvidia-uvm-tools'])
  t.same(nv[0]?.containerEdits?.mounts?.map(m => m.hostPath), ['/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15', '/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.15', '/usr/bin/nvidia-smi'])
  t.same(nv[0]?.devices[0]?.annotations, { uuid: 'GPU-6f3a1c2e-9b1d-4c55-8e7a-0d2f4b1a9c11' })
})

t.test('gpuReport: GPUs and CDI specs for `bolt-agent gpu --json`', async t => {
  const root = await copyFixture(t, 'intel')
  const r = await gpuReport({ root })
  t.equal(r.gpus.length, 1)
  t.same(r.cdi.generated, [join(root, 'var/run/cdi/bolt-intel.json')])
  t.same(r.cdi.specs.map(s => s.kind), ['intel.com/gpu'])
  t.same(r.cdi.specs[0]?.devices, ['intel.com/gpu=gpu0', 'intel.com/gpu=all'])
  t.same(r.cdi.errors, [])
  t.doesNotThrow(() => JSON.stringify(r))
})

t.test('gpuReport: a CDI spec that cannot be generated is in its errors, not dropped', async t => {
  const root = await copyFixture(t, 'intel')
  const { writeFile } = await import('node:fs/promises')
  await writeFile(join(root, 'var'), 'a file where var/run/cdi should go')
  const r = await gpuReport({ root })
  t.equal(r.gpus.length, 1)
  t.same(r.cdi.generated, [])
  t.match(r.cdi.errors, [/^generating CDI specs: /])
})

t.test('a broken CDI spec is reported, the others still read', async t => {
  const root = await copyFixture(t, 'nvidia')
  const { writeFile } = await import('node:fs/promises')
  await writeFile(join(root, 'etc/cdi/broken.json'), '{"cdiVersion": "0.6.0", "kind": "nope"}')
  const errors: string[] = []
  const specs = await readCdiSpecs({ root, onError: e => { errors.push(e.name) } })
  t.equal(specs.length, 1)
  t.same(errors, ['CdiSpecError'])
})

t.test('gaming profile: DRI, input, sound, display and audio sockets, Proton/Wine/DXVK env', async t => {
  const root = join(fixtures, 'intel')
  const edits = await gamingEdits({ display: ':0', waylandDisplay: 'wayland-0', xdgRuntimeDir: '/run/user/1000' }, root)
  t.same(edits.deviceNodes?.map(d => d.path), [
    '/dev/dri/card0', '/dev/dri/renderD128', '/dev/input/event0', '/dev/input/event1', '/dev/input/js0', '/dev/input/mice',
    '/dev/snd/controlC0', '/dev/snd/pcmC0D0c', '/dev/snd/pcmC0D0p', '/dev/snd/timer', '/dev/uinput'
  ])
  t.same(edits.mounts?.map(m => [m.hostPath, m.containerPath]), [
    ['/tmp/.X11-unix', '/tmp/.X11-unix'],
    ['/run/user/1000/wayland-0', '/run/bolt-xdg/wayland-0'],
    ['/run/user/1000/pulse/native', '/run/bolt-xdg/pulse/native'],
    ['/run/user/1000/pipewire-0', '/run/bolt-xdg/pipewire-0']
  ])
  for (const kv of ['DISPLAY=:0', 'WAYLAND_DISPLAY=wayland-0', 'XDG_RUNTIME_DIR=/run/bolt-xdg', 'PULSE_SERVER=unix:/run/bolt-xdg/pulse/native', 'WINEDEBUG=-all', 'DXVK_LOG_LEVEL=none', 'WINEESYNC=1']) {
    t.ok(edits.env?.includes(kv), kv)
  }
  const bare = await gamingEdits({}, join(fixtures, 'amd'))
  t.same(bare.mounts, [], 'no sockets asked for, none mounted')
  // Fixture stand-ins are not device nodes: applying them must refuse, not invent numbers.
  const config = await baseConfig()
  await t.rejects(applyContainerEdits(config, edits, root), { name: 'GpuUnavailableError' })
})

const haveRunc = (await detectRuntimes()).some(r => r.name === 'runc')
t.test('a capsule asking for GPUs gets their device nodes (runc, AMD fixture host)', { skip: process.getuid?.() !== 0 ? 'needs root' : !haveRunc ? 'runc is not installed' : false }, async t => {
  const hostRoot = await copyFixture(t, 'amd')
  const dataDir = await mkdtemp(join(tmpdir(), 'bolt-gpu-run-'))
  let rt = await createRuntime({ dataDir, runtime: 'runc', hostRoot })
  t.teardown(async () => {
    for (const c of await rt.list()) await rt.remove(c.name, { force: true })
    await rt.close()
    await rm(dataDir, { recursive: true, force: true })
  })
  const img = await busyboxImage()
  const { id } = await rt.prepareImage(img.layoutDir, img.ref)
  // Started at the same time: each gets its own GPU.
  await Promise.all(['g1', 'g2'].map(async name => await rt.run({ name, image: id, gpus: 1, args: ['sleep', '100'] })))
  t.same([...(await rt.state('g1')).devices, ...(await rt.state('g2')).devices].sort(), ['amd.com/gpu=gpu0', 'amd.com/gpu=gpu1'], 'two concurrent capsules get different GPUs')
  const g2dev = (await rt.state('g2')).devices[0] as string
  const n = g2dev.endsWith('gpu1') ? 1 : 0
  await t.rejects(rt.run({ name: 'g3', image: id, gpus: 1, args: ['true'] }), { name: 'GpuUnavailableError' })
  const ls = await rt.exec('g2', ['sh', '-c', `ls /dev/dri; stat -c "%t:%T" /dev/dri/renderD${128 + n} /dev/kfd`])
  t.equal(ls.exitCode, 0, ls.stderr)
  t.same(ls.stdout.trim().split('\n'), [`card${n}`, `renderD${128 + n}`, (226).toString(16) + ':' + (128 + n).toString(16), 'eb:0'], 'its card, render node (226:128+n) and /dev/kfd (235:0) are in the capsule, not the other GPU')
  await rt.stop('g1', { timeoutMs: 100 })
  await rt.run({ name: 'g3', image: id, gpus: 1, args: ['true'] })
  t.same((await rt.state('g3')).devices, (await rt.state('g1')).devices, 'a stopped capsule frees its GPU')
  await rt.wait('g3')
  // An agent restart adopts g2 with its GPU: the next capsule must not get it.
  await rt.close()
  rt = await createRuntime({ dataDir, runtime: 'runc', hostRoot })
  t.same((await rt.state('g2')).devices, [g2dev], 'the adopted capsule still holds its GPU')
  await rt.run({ name: 'g4', image: id, gpus: 1, args: ['true'] })
  t.notSame((await rt.state('g4')).devices, [g2dev])
  await t.rejects(rt.run({ name: 'g5', image: id, gpus: 2, args: ['true'] }), { name: 'GpuUnavailableError' })
})

t.test('a node refuses the gaming profile unless its config allows it (runc)', { skip: process.getuid?.() !== 0 ? 'needs root' : !haveRunc ? 'runc is not installed' : false }, async t => {
  // Security issue #21, finding 6: input and sound devices only where the node opts in.
  const hostRoot = await copyFixture(t, 'intel')
  const dataDir = await mkdtemp(join(tmpdir(), 'bolt-gaming-run-'))
  const closed = await createRuntime({ dataDir: join(dataDir, 'closed'), runtime: 'runc', hostRoot })
  const open = await createRuntime({ dataDir: join(dataDir, 'open'), runtime: 'runc', hostRoot, allowGaming: true })
  t.teardown(async () => {
    for (const rt of [closed, open]) {
      for (const c of await rt.list()) await rt.remove(c.name, { force: true })
      await rt.close()
    }
    await rm(dataDir, { recursive: true, force: true })
  })
  const img = await busyboxImage()
  for (const rt of [closed, open]) await rt.prepareImage(img.layoutDir, img.ref)
  const { id } = await closed.prepareImage(img.layoutDir, img.ref)
  await t.rejects(closed.run({ name: 'game', image: id, gaming: true, args: ['true'] }), { name: 'GamingNotAllowedError', message: /set \[capsules\] allow_gaming = true/ }, 'refused by default')
  t.same(await closed.list(), [], 'and nothing was created')
  // Allowed: the profile is applied (and the fixture's stand-ins, not being device nodes, are refused by the edits).
  // A failed start waits for its waiter process, which is unref'd (it outlives the agent by design): keep this
  // bare test process's event loop alive meanwhile, as an agent's servers do.
  const keepAlive = setInterval(() => undefined, 1000)
  t.teardown(() => { clearInterval(keepAlive) })
  await t.rejects(open.run({ name: 'game', image: id, gaming: true, args: ['true'] }), { name: 'GpuUnavailableError' }, 'allowed: the gaming edits are applied')
})
