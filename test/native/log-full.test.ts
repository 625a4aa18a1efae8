// A capsule's log on a full disk: the append fails with ENOSPC, the runtime
// reports it through onError (before, the log writer emitted an 'error' no one
// listened for, which became an unhandled rejection that could end the
// agent), and the capsule and this process run on. Real runc, a real 24 MiB
// tmpfs as the runtime's data dir.
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { createRuntime, detectRuntimes } from '../../native/index.js'
import { busyboxImage } from './image-fixture.js'

const run = promisify(execFile)

const runtimes = await detectRuntimes()
if (process.getuid?.() !== 0 || runtimes.length === 0) {
  t.plan(0, 'needs root and an OCI runtime (runc or crun)')
} else {
  t.test('a log append that fails (disk full) is reported; the capsule runs on', async t => {
    const dataDir = await mkdtemp(join(tmpdir(), 'bolt-log-full-'))
    await run('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', dataDir])
    const errors: Array<{ what: string, capsule: string, code: string | undefined }> = []
    const rt = await createRuntime({ dataDir: join(dataDir, 'rt'), onError: (what, capsule, err) => { errors.push({ what, capsule, code: (err as NodeJS.ErrnoException).code }) } })
    t.teardown(async () => {
      for (const c of await rt.list()) await rt.remove(c.name, { force: true }).catch(() => undefined)
      await rt.close()
      // Whatever a failed run left: its containers, killed through the runtime's own state.
      for (const r of ['runc', 'crun']) {
        const root = join(dataDir, 'rt', `${r}-state`)
        const ids = await run(r, ['--root', root, 'list', '-q']).then(o => o.stdout.split('\n').filter(Boolean), () => [])
        for (const id of ids) await run(r, ['--root', root, 'delete', '-f', id]).catch(() => undefined)
      }
      await run('umount', ['-l', dataDir]).catch(() => undefined)
      await rm(dataDir, { recursive: true, force: true })
    })
    const img = await busyboxImage()
    const image = (await rt.prepareImage(img.layoutDir, img.ref)).id
    // About 1 KiB a line, 40 MiB in all: more than the tmpfs holds.
    await rt.run({ name: 'chatty', image, args: ['sh', '-c', 'l=$(printf "%01000d" 0); i=0; while [ $i -lt 40000 ]; do echo $l; i=$((i+1)); done; sleep 1000'] })
    const deadline = Date.now() + 120_000
    while (Date.now() < deadline && errors.length === 0) await new Promise(resolve => setTimeout(resolve, 100))
    t.ok(errors.length > 0, 'the failed append was reported')
    t.match(errors[0], { what: 'log', capsule: 'chatty', code: 'ENOSPC' }, 'as the capsule\'s log, with ENOSPC')
    const st = await rt.state('chatty')
    t.equal(st.status, 'running', 'the capsule runs on')
    // And a full disk does not make it unstoppable (stop wrote its record first, and failed there).
    const exit = await rt.stop('chatty', { timeoutMs: 200 })
    t.equal(exit.reason, 'stopped', 'it stops on the full disk')
    // The waiter's exit file may not fit on the disk either: its parent has the code from the waiter's own status.
    t.equal(exit.exitCode, 137, 'with its code (killed after the stop timeout)')
    await rt.remove('chatty', { force: true })
    t.same(await rt.list(), [], 'and is removed')
  })
}
