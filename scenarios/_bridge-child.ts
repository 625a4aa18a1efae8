// The measuring half of bridge-throughput, run by it inside a namespace of
// its own (nsenter --net): a node runtime with a bridge, a server capsule
// with a published port, client capsules sending through the node address
// and that port, and the same transfer between two host processes. Prints
// one JSON line: seconds per round for each path.
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createRuntime } from '../native/index.js'
import { writeDemoLayout, DEMO_REF } from '../agent/demo-image.js'

const MiB = Number(process.argv[2] ?? '512')
const ROUNDS = Number(process.argv[3] ?? '3')
const HOST_PORT = 20001
const BASE_PORT = 20002

/** sh that prints "T <uptime before> <uptime after>" around one transfer to ADDR PORT. */
const sendScript = (bb: string, addr: string, port: number): string =>
  `a=$(cat /proc/uptime); ${bb} dd if=/dev/zero bs=1048576 count=${MiB} 2>/dev/null | ${bb} nc ${addr} ${port}; b=$(cat /proc/uptime); echo "T \${a%% *} \${b%% *}"`

function seconds (line: string | undefined): number {
  const m = /T ([\d.]+) ([\d.]+)/.exec(line ?? '')
  if (m === null) throw new Error(`no timing in ${JSON.stringify(line)}`)
  return Number(m[2]) - Number(m[1])
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
const hostServer = spawn('sh', ['-c', `while true; do busybox nc -l -p ${BASE_PORT} > /dev/null || exit 1; done`], { stdio: 'ignore' })
const result: { bridge: number[], host: number[], error?: string } = { bridge: [], host: [] }
try {
  const layout = join(dir, 'layout')
  await writeDemoLayout(layout, DEMO_REF)
  const image = (await rt.prepareImage(layout, DEMO_REF)).id
  await rt.run({ name: 'srv', image, args: ['/bin/sh', '-c', 'while true; do /bin/busybox nc -l -p 5001 > /dev/null; done'], network: { bridge: { ports: [{ host: HOST_PORT, container: 5001, proto: 'tcp' }] } } })
  const gw = rt.bridge?.gateway ?? ''
  for (let i = 0; i < ROUNDS; i++) {
    // Alternate the two paths so a busy neighbour on the machine weighs on both alike.
    const name = `cli-${i}`
    await rt.run({ name, image, args: ['/bin/sh', '-c', sendScript('/bin/busybox', gw, HOST_PORT)], network: { bridge: { ports: [] } } })
    await rt.wait(name)
    let last: string | undefined
    for await (const r of rt.logs(name)) if (r.line.startsWith('T ')) last = r.line
    result.bridge.push(seconds(last))
    await rt.remove(name, { force: true })
    result.host.push(seconds((await shOut(sendScript('busybox', '127.0.0.1', BASE_PORT))).trim()))
  }
} catch (err) {
  result.error = (err as Error).message
} finally {
  hostServer.kill('SIGKILL')
  await rt.remove('srv', { force: true }).catch(() => undefined)
  await rt.bridge?.reconcile(new Set()).catch(() => undefined)
  await rt.bridge?.destroy().catch(() => undefined)
  await rt.close()
  await rm(dir, { recursive: true, force: true }).catch(() => undefined)
}
process.stdout.write(JSON.stringify({ mib: MiB, ...result }) + '\n')
