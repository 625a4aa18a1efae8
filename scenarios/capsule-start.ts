// capsule-start: how long a capsule takes from the runtime API call to its
// exit, for /bin/true from a cached image, against bare `runc run` of the same
// bundle in the same run. Goal (issue 4): p50 <= 1.3 x bare + 20 ms.
import { spawn } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createRuntime, detectRuntimes, type OciSpec, type RuntimeName } from '../native/index.js'
import { busyboxImage } from '../test/native/image-fixture.js'
import { percentile, type Scenario, type ScenarioReport } from './report.js'

const RUNS = 50
const QUICK_RUNS = 10

async function timeBare (argv: string[]): Promise<number> {
  const t0 = performance.now()
  await new Promise<void>((resolve, reject) => {
    const c = spawn(argv[0] as string, argv.slice(1), { stdio: 'ignore' })
    c.once('error', reject)
    c.once('exit', code => { code === 0 ? resolve() : reject(new Error(`bare run exited ${code ?? '?'}`)) })
  })
  return performance.now() - t0
}

interface Measured { api: number[], bare: number[] }

async function measure (runtime: RuntimeName, runs: number, work: string): Promise<Measured> {
  const dataDir = join(work, runtime)
  const rt = await createRuntime({ dataDir, runtime })
  try {
    const img = await busyboxImage()
    const { id } = await rt.prepareImage(img.layoutDir, img.ref)
    // One capsule to get the exact bundle the API writes; bare runs reuse it with their own rootfs.
    const probe = await rt.run({ name: 'probe', image: id, args: ['/bin/true'] })
    await probe.exited
    const probeDir = join(dataDir, 'capsules', 'probe')
    const config = JSON.parse(await readFile(join(probeDir, 'config.json'), 'utf8')) as OciSpec
    const bareDir = join(work, `${runtime}-bare`)
    await mkdir(join(bareDir, 'etc'), { recursive: true })
    for (const f of ['hostname', 'hosts', 'resolv.conf']) await copyFile(join(probeDir, 'etc', f), join(bareDir, 'etc', f))
    const { ImageStore } = await import('../native/image/store.js')
    const store = new ImageStore(dataDir, 'overlay', false)
    const image = await store.get(id)
    if (image === undefined) throw new Error('image vanished')
    const rootfs = await store.createRootfs(image, bareDir)
    config.root.path = rootfs
    config.mounts = config.mounts.map(m => m.source?.startsWith(join(probeDir, 'etc')) === true ? { ...m, source: join(bareDir, 'etc', m.destination.slice(5)) } : m)
    await rm(join(dataDir, 'capsules', 'probe'), { recursive: true, force: true }).catch(() => undefined)
    await rt.remove('probe').catch(() => undefined)

    const out: Measured = { api: [], bare: [] }
    const installed = (await detectRuntimes()).find(r => r.name === runtime)
    if (installed === undefined) throw new Error(`${runtime} vanished`)
    const { OciRuntimeDriver } = await import('../native/oci/driver.js')
    const { CapsuleCgroup, crunRefusesHybrid, detectCgroups } = await import('../native/cgroups.js')
    const driver = new OciRuntimeDriver(runtime, installed.path, { stateRoot: join(work, `${runtime}-bare-state`), hybridCgroupWorkaround: runtime === 'crun' && crunRefusesHybrid(await detectCgroups()) })
    try {
      for (let i = 0; i < runs; i++) {
        // Interleaved, so drift on a shared machine hits both alike.
        // Same shape as the capsule's: a parent per capsule, the runtime's cgroup below it.
        config.linux.cgroupsPath = `/bolt-bench/${process.pid}-${i}/capsule`
        await writeFile(join(bareDir, 'config.json'), JSON.stringify(config))
        out.bare.push(await timeBare(driver.argv(['run', '--bundle', bareDir, `bare-${i}`])))
        const t0 = performance.now()
        const h = await rt.run({ name: `c${i}`, image: id, args: ['/bin/true'] })
        const exit = await h.exited
        out.api.push(performance.now() - t0)
        if (exit.exitCode !== 0) throw new Error(`capsule c${i} exited ${String(exit.exitCode)} (${exit.reason})`)
        await rt.remove(`c${i}`)
      }
    } finally {
      await store.removeRootfs(bareDir)
      await new CapsuleCgroup(await detectCgroups(), '/bolt-bench').remove()
    }
    return out
  } finally {
    await rt.close()
  }
}

export const scenario: Scenario = {
  name: 'capsule-start',
  description: '/bin/true from a cached image: runtime API call to exit, vs bare `runc run` of the same bundle',
  run: async ({ quick }): Promise<ScenarioReport> => {
    if (process.getuid?.() !== 0) throw new Error('capsule-start needs root (it runs runc with cgroup limits)')
    const runs = quick ? QUICK_RUNS : RUNS
    const installed = (await detectRuntimes()).map(r => r.name)
    if (!installed.includes('runc')) throw new Error('runc is not installed (apt-get install runc)')
    const work = await mkdtemp(join(tmpdir(), 'bolt-capsule-start-'))
    const figures: ScenarioReport['figures'] = {}
    let met: boolean | null = null
    try {
      for (const runtime of ['runc', 'crun'] as const) {
        if (!installed.includes(runtime)) { figures[`${runtime}Skipped`] = `${runtime} is not installed`; continue }
        const m = await measure(runtime, runs, work)
        const p50 = percentile(m.api, 50)
        const p95 = percentile(m.api, 95)
        const b50 = percentile(m.bare, 50)
        const b95 = percentile(m.bare, 95)
        const prefix = runtime === 'runc' ? '' : 'crun'
        const key = (k: string): string => prefix === '' ? k : `${prefix}${k[0]?.toUpperCase() ?? ''}${k.slice(1)}`
        figures[key('p50Ms')] = p50
        figures[key('p95Ms')] = p95
        figures[key('bareP50Ms')] = b50
        figures[key('bareP95Ms')] = b95
        figures[key('p50Ratio')] = p50 / b50
        figures[key('p95Ratio')] = p95 / b95
        if (runtime === 'runc') met = p50 <= 1.3 * b50 + 20
      }
    } finally {
      await rm(work, { recursive: true, force: true })
    }
    return {
      name: 'capsule-start',
      figures,
      goal: 'runc p50 <= 1.3 x bare runc p50 + 20 ms (ratios against bare `<runtime> run` of the same bundle, same run)',
      met,
      config: { runs, image: 'busybox (busybox-static, built locally)', command: '/bin/true', rootfs: 'overlay when available', loadAverage1m: loadavg()[0], cpus: availableParallelism() }
    }
  }
}
