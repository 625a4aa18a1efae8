// The measuring half of bridge-throughput, run by it inside a namespace of
// its own (nsenter --net): a node runtime with a bridge, a server capsule
// with a published port, client capsules sending through the node address
// and that port, and the same transfer between two host processes. Prints
// one JSON line: seconds per round for each path.
//
// The host processes each run in a cpu cgroup beside the capsules' (under
// the runtime's /bolt/ID), so both sides get the CPU weight a capsule gets:
// on a loaded machine every agent's capsules share the /bolt group, while a
// host process left in its session's group had a share of its own, and the
// figure measured that instead of the network.
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createRuntime } from '../native/index.js'
import { writeDemoLayout, DEMO_REF } from '../agent/demo-image.js'
import { detectCgroups } from '../native/cgroups.js'

const MiB = Number(process.argv[2] ?? '512')
const ROUNDS = Number(process.argv[3] ?? '3')
const HOST_PORT = 20001
const BASE_PORT = 20002
const HOST_CAPSULE_PORT = 20003

/**
 * sh that prints "T <uptime before> <uptime after>" around one HTTP GET of
 * the MiB-sized file from ADDR:PORT that wget completed (exit 0); a refused
 * connection (the server not listening yet) is tried again, and not timed.
 * busybox wget, not nc: busybox nc moves bulk data through small reads
 * (about 25 MB/s here), which would measure nc instead of the network.
 */
const getScript = (bb: string, addr: string, port: number): string =>
  `for i in 1 2 3 4 5 6 7 8 9 10; do a=$(cat /proc/uptime); ${bb} wget -q -O /dev/null http://${addr}:${port}/f && { b=$(cat /proc/uptime); echo "T \${a%% *} \${b%% *}"; exit 0; }; ${bb} sleep 0.5; done; echo "F"; exit 1`

function seconds (line: string | undefined): number {
  const m = /T ([\d.]+) ([\d.]+)/.exec(line ?? '')
  if (m === null) throw new Error(`no timing in ${JSON.stringify(line)}`)
  return Number(m[2]) - Number(m[1])
}

/** The directory of a process's cpu cgroup: v1's cpu hierarchy, else the unified one. */
async function cpuCgroupDir (pid: number): Promise<string | undefined> {
  const layout = await detectCgroups()
  const lines = (await readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n')
  const v1 = layout.v1.cpu
  const v1Line = lines.find(l => l.split(':')[1]?.split(',').includes('cpu') === true)
  if (v1 !== undefined && v1Line !== undefined) return join(v1, v1Line.split(':')[2] ?? '')
  const v2Line = lines.find(l => l.startsWith('0::'))
  return layout.unified !== undefined && v2Line !== undefined ? join(layout.unified, v2Line.slice(3)) : undefined
}

async function shOut (script: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const p = spawn('sh', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    p.stdout.on('data', (d: Buffer) => { out += d.toString() })
    p.on('error', reject)
    p.on('close', () => { resolve(out) })
  })
}

const dir = await mkdtemp(join(tmpdir(), 'bolt-bridge-bench-'))
const rt = await createRuntime({ dataDir: join(dir, 'rt'), bridge: { name: 'boltb0', subnet: '10.88.250.0/24' } })
await mkdir(join(dir, 'www'))
await shOut(`busybox dd if=/dev/zero of=${join(dir, 'www', 'f')} bs=1048576 count=${MiB} 2>/dev/null`)
let hostServer: ReturnType<typeof spawn> | undefined
/** The host processes' cpu cgroups (server, client), siblings of the capsules'; none where cgroups are not found. */
const hostGroups: string[] = []
const result: { bridge: number[], host: number[], hostCapsules: number[], error?: string } = { bridge: [], host: [], hostCapsules: [] }
try {
  const layout = join(dir, 'layout')
  await writeDemoLayout(layout, DEMO_REF)
  const image = (await rt.prepareImage(layout, DEMO_REF)).id
  await rt.run({ name: 'srv', image, args: ['/bin/sh', '-c', `/bin/busybox dd if=/dev/zero of=/tmp/f bs=1048576 count=${MiB} 2>/dev/null && exec /bin/busybox httpd -f -p 5001 -h /tmp`], network: { bridge: { ports: [{ host: HOST_PORT, container: 5001, proto: 'tcp' }] } } })
  // Two host-network capsules: what a capsule costs without the bridge (seccomp, cgroups), to tell the two apart.
  await rt.run({ name: 'hsrv', image, args: ['/bin/sh', '-c', `/bin/busybox dd if=/dev/zero of=/tmp/f bs=1048576 count=${MiB} 2>/dev/null && exec /bin/busybox httpd -f -p ${HOST_CAPSULE_PORT} -h /tmp`], network: 'host' })
  const hsrvPid = (await rt.state('hsrv')).pid
  const capsuleGroup = hsrvPid === null ? undefined : await cpuCgroupDir(hsrvPid) // .../bolt/ID/hsrv/capsule
  if (capsuleGroup !== undefined) {
    for (const n of ['bench-host-srv', 'bench-host-cli']) {
      const d = join(dirname(dirname(capsuleGroup)), n)
      await mkdir(d)
      hostGroups.push(d)
    }
  }
  hostServer = spawn('busybox', ['httpd', '-f', '-p', String(BASE_PORT), '-h', join(dir, 'www')], { stdio: 'ignore' })
  if (hostGroups[0] !== undefined && hostServer.pid !== undefined) await writeFile(join(hostGroups[0], 'cgroup.procs'), String(hostServer.pid))
  const joinClientGroup = hostGroups[1] !== undefined ? `echo $$ > ${join(hostGroups[1], 'cgroup.procs')}; ` : ''
  const gw = rt.bridge?.gateway ?? ''
  const timeCapsule = async (name: string, script: string, network: 'host' | { bridge: { ports: [] } }): Promise<number> => {
    await rt.run({ name, image, args: ['/bin/sh', '-c', script], network })
    await rt.wait(name)
    let last: string | undefined
    for await (const r of rt.logs(name)) if (r.line.startsWith('T ')) last = r.line
    await rt.remove(name, { force: true })
    return seconds(last)
  }
  for (let i = 0; i < ROUNDS; i++) {
    // Alternate the two paths so a busy neighbour on the machine weighs on both alike.
    result.bridge.push(await timeCapsule(`cli-${i}`, getScript('/bin/busybox', gw, HOST_PORT), { bridge: { ports: [] } }))
    result.hostCapsules.push(await timeCapsule(`hcli-${i}`, getScript('/bin/busybox', '127.0.0.1', HOST_CAPSULE_PORT), 'host'))
    result.host.push(seconds((await shOut(joinClientGroup + getScript('busybox', '127.0.0.1', BASE_PORT))).trim()))
  }
} catch (err) {
  result.error = (err as Error).message
} finally {
  if (hostServer !== undefined && hostServer.exitCode === null) {
    const exited = new Promise(resolve => hostServer?.once('exit', resolve))
    hostServer.kill('SIGKILL')
    await exited
  }
  for (const d of hostGroups) await rmdir(d).catch((err: Error) => { process.stderr.write(`bridge-throughput: cannot remove ${d}: ${err.message}\n`) })
  await rt.remove('srv', { force: true }).catch(() => undefined)
  await rt.remove('hsrv', { force: true }).catch(() => undefined)
  await rt.bridge?.reconcile(new Set()).catch(() => undefined)
  await rt.bridge?.destroy().catch(() => undefined)
  await rt.close()
  await rm(dir, { recursive: true, force: true }).catch(() => undefined)
}
process.stdout.write(JSON.stringify({ mib: MiB, ...result }) + '\n')
