// The agent runs with umask 077 (issue #21, finding 8), yet a capsule's own
// non-root user must still enter its rootfs and read the files the runtime
// mounts in (/etc/hosts, resolv.conf), and the capsule's processes get the
// usual umask 022: modes that capsules see are set explicitly, not by umask.
import t from 'tap'
import { AGENT_UMASK } from '../../agent/data-dir-mode.js'
import { collect, runtimeInstalled, withRuntime } from './compliance.js'
import { busyboxImage } from './image-fixture.js'

const SCRIPT = 'ls / /bin >/dev/null && cat /etc/hosts /etc/resolv.conf /etc/hostname /etc/passwd >/dev/null && echo read-ok; umask; touch /tmp/f && stat -c %a /tmp/f'

if (process.getuid?.() !== 0) t.plan(0, 'capsules as another user need root')
else if (!(await runtimeInstalled('runc')) && !(await runtimeInstalled('crun'))) t.plan(0, 'no OCI runtime installed')
else {
  await busyboxImage() // the shared test image cache, made before the umask changes
  for (const rootfsMode of ['overlay', 'copy'] as const) {
    t.test(`under the agent's umask a capsule running as nobody reads its rootfs and /etc (${rootfsMode})`, async t => {
      const saved = process.umask(AGENT_UMASK)
      t.teardown(() => { process.umask(saved) })
      const { rt, image } = await withRuntime(t, 'auto', { rootfsMode })
      const h = await rt.run({ name: 'nobody', image, user: '65534:65534', network: 'private', args: ['sh', '-c', SCRIPT] })
      const exit = await h.exited
      const lines = (await collect(rt.logs('nobody'))).map(l => l.line)
      t.equal(exit.exitCode, 0, `exits 0 (${lines.join(' | ')})`)
      t.same(lines, ['read-ok', '0022', '644'], 'reads its rootfs and /etc; its processes run with umask 022')
    })
  }
}
