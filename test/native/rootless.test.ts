import t from 'tap'
import { execFile } from 'node:child_process'
import { chown, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { detectRuntimes } from '../../native/index.js'
import { findBinary } from '../../native/oci/driver.js'
import { detectCgroups } from '../../native/cgroups.js'

const here = dirname(fileURLToPath(import.meta.url))
const NOBODY = 65534
const run = promisify(execFile)

/** Rootless for real: as root we can drop to nobody with setpriv and let the agent code run unprivileged. */
async function whyNot (): Promise<string | false> {
  if (process.getuid?.() !== 0) return 'needs root to drop to an unprivileged user'
  if (await findBinary('setpriv') === undefined) return 'setpriv is not installed'
  try {
    await run('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', 'unshare', '-U', '-r', 'true'])
  } catch {
    return 'unprivileged user namespaces are disabled here'
  }
  return false
}

const skip = await whyNot()
const installed = (await detectRuntimes()).map(r => r.name)
const hybrid = (await detectCgroups()).mode === 'hybrid'

for (const runtime of ['runc', 'crun'] as const) {
  t.test(`rootless ${runtime}: a capsule runs as an unprivileged user in a user namespace`, { skip: skip !== false ? skip : !installed.includes(runtime) ? `${runtime} is not installed` : false }, async t => {
    const work = await mkdtemp(join(tmpdir(), 'bolt-rootless-'))
    t.teardown(async () => { await rm(work, { recursive: true, force: true }) })
    await chown(work, NOBODY, NOBODY)
    const { stdout } = await run('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', process.execPath, join(here, 'rootless-child.js'), work, runtime], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, XDG_RUNTIME_DIR: work },
      timeout: 60_000
    })
    const result = JSON.parse(stdout.trim().split('\n').pop() as string) as { exit?: { exitCode: number, reason: string }, lines?: string[], error?: string }
    if (runtime === 'crun' && hybrid) {
      t.equal(result.error, 'RuntimeUnsupportedError', 'crun rootless on a hybrid host is refused up front, with a reason')
      return
    }
    t.match(result.exit, { exitCode: 3, reason: 'exited' })
    t.equal(result.lines?.[0], '0', 'root inside the capsule')
    t.match(result.lines?.[1] ?? '', new RegExp(`^\\s*0\\s+${NOBODY}\\s+1$`), '…which is nobody outside')
  })
}
