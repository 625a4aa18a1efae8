// Rootfs spares (an overlay mounted ahead for the next start of an image):
// a start takes one and its capsule sees the image; removing the image and
// closing the runtime unmount what is left. Real runc, overlay and mounts.
import t from 'tap'
import { mkdir, readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { withRuntime, runtimeInstalled } from './compliance.js'
import { isMountPoint } from '../../native/image/store.js'
import { runCommand } from '../../native/command.js'
import { createRuntime } from '../../native/index.js'
import { waitOrFail } from '../helpers/harness.js'

/** Mount points under `dir`, from /proc/self/mountinfo (field 5). */
async function mountsUnder (dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8')
  return info.split('\n').map(l => l.split(' ')[4] ?? '').filter(m => m.startsWith(`${dir}/`))
}

async function spares (dataDir: string): Promise<string[]> {
  return await readdir(join(dataDir, 'rootfs-spares'))
}

/** Spares whose rootfs is mounted (a spare's dir is there before its mount). */
async function mountedSpares (dataDir: string): Promise<string[]> {
  const out: string[] = []
  for (const s of await spares(dataDir)) if (await isMountPoint(join(dataDir, 'rootfs-spares', s, 'rootfs'))) out.push(s)
  return out
}

if (process.getuid?.() !== 0) t.plan(0, 'overlay spares need root')
else if (!(await runtimeInstalled('runc'))) t.plan(0, 'runc is not installed (apt-get install runc)')
else {
  t.test('a start takes the spare made after the last start of its image', async t => {
    const { rt, image, dataDir } = await withRuntime(t, 'runc', { rootfsMode: 'overlay' })
    t.same(await spares(dataDir), [], 'no spare before any start')
    const first = await rt.run({ name: 'first', image, args: ['/bin/true'] })
    t.equal((await first.exited).exitCode, 0)
    await waitOrFail('a mounted spare for the image', async () => (await mountedSpares(dataDir)).length === 1)
    const [spare] = await mountedSpares(dataDir)

    const second = await rt.run({ name: 'second', image, args: ['/bin/sh', '-c', 'echo from-the-image; test -x /bin/busybox'] })
    t.equal((await second.exited).exitCode, 0, 'the capsule on the spare sees the image')
    t.notOk((await spares(dataDir)).includes(spare!), 'the spare was taken')
    // Released at exit: the taken spare's mount went with the capsule.
    await rt.remove('second')
    t.notOk((await mountsUnder(dataDir)).some(m => m.includes('/capsules/second/')), 'its mount is gone with the capsule')

    await waitOrFail('a new spare', async () => (await mountedSpares(dataDir)).length === 1)
    await rt.remove('first')
    await rt.removeImage(image)
    t.same(await mountsUnder(dataDir), [], 'removing the image unmounts its spare')
    t.same(await spares(dataDir), [])
  })

  t.test('close unmounts the spares; a new runtime on the data dir removes what a crash left', async t => {
    const { rt, image, dataDir } = await withRuntime(t, 'runc', { rootfsMode: 'overlay' })
    const c = await rt.run({ name: 'c', image, args: ['/bin/true'] })
    await c.exited
    await waitOrFail('a spare', async () => (await mountedSpares(dataDir)).length === 1)
    await rt.remove('c')
    await rt.close()
    t.same(await mountsUnder(dataDir), [], 'no mount left after close')
    t.same(await spares(dataDir), [])

    // An agent killed with a spare mounted leaves it: the next runtime's start removes it.
    const left = join(dataDir, 'rootfs-spares', 'left')
    await mkdir(join(left, 'rootfs'), { recursive: true })
    const m = await runCommand('mount', ['-t', 'tmpfs', 'tmpfs', join(left, 'rootfs')])
    t.equal(m.exitCode, 0, m.stderr)
    const again = await createRuntime({ dataDir, runtime: 'runc' })
    t.teardown(async () => { await again.close() })
    t.same(await mountsUnder(dataDir), [], 'the leftover spare is unmounted')
    t.same(await spares(dataDir), [])
  })

  t.test('starts in a row outlast the FIFO pool and the spares without a failure', async t => {
    const { rt, image } = await withRuntime(t, 'runc', { rootfsMode: 'overlay' })
    // More than FIFO_POOL_SIZE starts at once: the pool runs dry and starts make their own pairs.
    const handles = await Promise.all(Array.from({ length: 10 }, async (_, i) => await rt.run({ name: `burst${i}`, image, args: ['/bin/sh', '-c', `echo ${i}`] })))
    const exits = await Promise.all(handles.map(async h => await h.exited))
    t.same(exits.map(e => e.exitCode), Array(10).fill(0))
    // After the burst, the pools refill: the next starts take ready pairs and a spare.
    for (let i = 0; i < 3; i++) {
      const h = await rt.run({ name: `after${i}`, image, args: ['/bin/true'] })
      t.equal((await h.exited).exitCode, 0)
    }
  })
}
