// `dev`'s demo capsule honours a stop: its shell is PID 1, which ignores
// SIGTERM unless it traps it, and then every stop (and Ctrl-C of `dev`)
// waited out the stop timeout and ended in SIGKILL. Real runtime, the demo's
// own command on busybox.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEMO_ARGS } from '../../agent/demo-capsule.js'
import { createRuntime, detectRuntimes } from '../../native/index.js'
import { busyboxImage } from '../native/image-fixture.js'
import { waitOrFail } from '../helpers/harness.js'

const runtimes = await detectRuntimes()
if (process.getuid?.() !== 0 || runtimes.length === 0) {
  t.plan(0, 'needs root and an OCI runtime (runc or crun)')
} else {
  t.test('the demo capsule exits on SIGTERM by itself, with status 0', async t => {
    const dataDir = await mkdtemp(join(tmpdir(), 'bolt-demo-'))
    const rt = await createRuntime({ dataDir })
    t.teardown(async () => {
      for (const c of await rt.list()) await rt.remove(c.name, { force: true }).catch(() => undefined)
      await rt.close()
      await rm(dataDir, { recursive: true, force: true })
    })
    const img = await busyboxImage()
    const image = (await rt.prepareImage(img.layoutDir, img.ref)).id
    await rt.run({ name: 'demo', image, args: DEMO_ARGS })
    const greeted = async (): Promise<boolean> => {
      for await (const r of rt.logs('demo')) if (r.line.includes('hello from a bolt capsule')) return true
      return false
    }
    // Running, with its trap set (the greeting comes after it).
    await waitOrFail('the demo prints its greeting', greeted, 30_000, 100)
    // A stop timeout far longer than any test: a SIGKILL after it would be 137, not 0.
    const exit = await rt.stop('demo', { timeoutMs: 120_000 })
    t.same({ reason: exit.reason, exitCode: exit.exitCode }, { reason: 'stopped', exitCode: 0 }, 'it ended on the SIGTERM itself')
  })
}
