// bridge-throughput: TCP bulk from one capsule to another through the node's
// bridge and a published port (client capsule -> node address:HOSTPORT ->
// nft DNAT -> server capsule) against the same transfer between two
// host-network processes (loopback), same tools (busybox httpd and wget), same run,
// in a network namespace of its own. Figure: throughputRatio = bridge MB/s ÷
// host MB/s (goal >= 0.9). vsHostCapsulesRatio: the bridge against two
// host-network capsules, i.e. the network's own cost without the capsule's.
import { spawn } from 'node:child_process'
import { execFile } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { Scenario, ScenarioReport } from './report.js'

const exec = promisify(execFile)
const here = dirname(fileURLToPath(import.meta.url))

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? Number.NaN
}

export const scenario: Scenario = {
  name: 'bridge-throughput',
  description: 'TCP bulk between two capsules through the bridge and a published port vs two host processes (goal >= 0.9)',
  async run ({ quick }): Promise<ScenarioReport> {
    if (process.getuid?.() !== 0) throw new Error('bridge-throughput needs root (network namespaces, runc)')
    const ns = `bbench${process.pid}`
    const mib = quick ? 128 : 256
    const rounds = quick ? 2 : 5
    await exec('ip', ['netns', 'add', ns])
    try {
      await exec('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
      const out = await new Promise<string>((resolve, reject) => {
        const p = spawn('nsenter', [`--net=/run/netns/${ns}`, process.execPath, join(here, '_bridge-child.js'), String(mib), String(rounds)], { stdio: ['ignore', 'pipe', 'inherit'] })
        let text = ''
        p.stdout.on('data', (d: Buffer) => { text += d.toString() })
        p.on('error', reject)
        p.on('close', () => { resolve(text) })
      })
      const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { mib: number, bridge: number[], host: number[], hostCapsules: number[], error?: string }
      if (r.error !== undefined) throw new Error(r.error)
      const bridgeMBps = r.mib * 1.048576 / median(r.bridge)
      const hostMBps = r.mib * 1.048576 / median(r.host)
      const hostCapsuleMBps = r.mib * 1.048576 / median(r.hostCapsules)
      const ratio = bridgeMBps / hostMBps
      return {
        name: 'bridge-throughput',
        // vsHostCapsulesRatio: the bridge against two --network host capsules, i.e. the bridge's own cost without the capsule's.
        figures: { bridgeMBps, hostMBps, hostCapsuleMBps, throughputRatio: ratio, vsHostCapsulesRatio: bridgeMBps / hostCapsuleMBps },
        goal: 'throughputRatio >= 0.9',
        met: ratio >= 0.9,
        config: { mibPerRound: r.mib, rounds, bridgeSeconds: r.bridge, hostSeconds: r.host, hostCapsuleSeconds: r.hostCapsules, tool: 'busybox httpd serving a file from tmpfs, busybox wget -O /dev/null, timed with /proc/uptime (10 ms)', bridgePath: 'capsule -> bridge address:published port -> DNAT -> capsule (bridge and veth MTU 65535, default route 1500)', hostPath: 'process -> 127.0.0.1 -> process, each in a cpu cgroup beside the capsules (same CPU weight)' }
      }
    } finally {
      await exec('ip', ['netns', 'del', ns]).catch(() => undefined)
    }
  }
}
