// s3-throughput: `aws s3 cp` of a 1 GiB file up to an agent's S3 endpoint
// and back down, against `dd` writing and reading the same bytes on the
// agent's disk in the same run (goal: >= 0.5 of dd up, >= 0.7 down), and the
// agent's peak RSS above idle while it streams (goal: <= 100 MB). The same
// client against a sink that stores and checks nothing (_s3-sink.ts) gives
// its ceiling on this machine: the ratio no server could beat here.
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { open, mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster } from '../test/helpers/harness.js'
import type { Scenario } from './report.js'
import { rssBytes } from './_membership.js'
import { RAFT_TOML } from './_raft.js'
import { startS3Sink } from './_s3-sink.js'

const AWS = '/usr/bin/aws'

async function exec (cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<number> {
  const t0 = Date.now()
  await new Promise<void>((resolve, reject) => {
    execFile(cmd, args, { timeout: 20 * 60_000, maxBuffer: 8 * 1024 * 1024, ...(env !== undefined ? { env } : {}) }, (err, _o, stderr) => { if (err !== null) reject(new Error(`${cmd} ${args[0] ?? ''}: ${stderr.slice(-500)}`)); else resolve() })
  })
  return (Date.now() - t0) / 1000
}

/** CPU seconds (user + system, all threads) process `pid` has used: on a loaded machine, steadier than wall time. */
async function cpuSeconds (pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).replace(/^.*\) /s, '').split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

async function writeRandom (file: string, bytes: number): Promise<void> {
  const fh = await open(file, 'w')
  const block = randomBytes(8 * 1024 * 1024)
  for (let n = 0; n < bytes; n += block.length) {
    block.writeUInt32LE(n / block.length, 0) // distinct blocks: no chunk dedup
    await fh.write(block, 0, Math.min(block.length, bytes - n))
  }
  await fh.close()
}

export const scenario: Scenario = {
  name: 's3-throughput',
  description: 'aws s3 cp of 1 GiB up and down through an agent vs dd on its disk, and the agent\'s peak RSS above idle',
  async run ({ quick }) {
    const size = quick ? 256 * 1024 * 1024 : 1024 * 1024 * 1024
    const cluster = await Cluster.create(`${RAFT_TOML(1)}\n[mirror]\nenabled = false\n[s3]\nlisten = "127.0.0.1:0"\n`)
    const home = await mkdtemp(join(tmpdir(), 'bolt-s3bench-'))
    try {
      const a = await cluster.add('a')
      await a.start(['init'])
      const key = await a.cli(['s3', 'key', 'create', '--json'], 30_000)
      const creds = JSON.parse(key.stdout) as { accessKey: string, secretKey: string, endpoint: string }
      const env = { PATH: '/usr/bin:/bin', HOME: home, AWS_ACCESS_KEY_ID: creds.accessKey, AWS_SECRET_ACCESS_KEY: creds.secretKey, AWS_DEFAULT_REGION: 'us-east-1', AWS_CONFIG_FILE: join(home, 'config'), AWS_SHARED_CREDENTIALS_FILE: join(home, 'credentials') }
      const src = join(home, 'src.bin')
      await writeRandom(src, size)
      await exec(AWS, ['--endpoint-url', creds.endpoint, 's3', 'mb', 's3://bench'], env)

      // Baseline: the same bytes to and from the agent's disk with dd.
      const ddFile = join(a.dataDir, 'dd.bin')
      const ddUp = await exec('dd', [`if=${src}`, `of=${ddFile}`, 'bs=4M', 'conv=fdatasync', 'status=none'])
      const ddDown = await exec('dd', [`if=${ddFile}`, `of=${join(home, 'dd.back')}`, 'bs=4M', 'conv=fdatasync', 'status=none'])
      await rm(ddFile)
      await rm(join(home, 'dd.back'))

      const pid = a.proc!.pid!
      await new Promise(resolve => setTimeout(resolve, 2000))
      const idle = await rssBytes(pid)
      let peak = idle
      const poll = setInterval(() => { void rssBytes(pid).then(r => { if (r > peak) peak = r }).catch(() => {}) }, 100)
      let up: number, down: number, peakUp: number
      const cpu0 = await cpuSeconds(pid)
      let cpuUp: number, cpuDown: number
      try {
        up = await exec(AWS, ['--endpoint-url', creds.endpoint, 's3', 'cp', src, 's3://bench/big.bin'], env)
        peakUp = peak
        const cpu1 = await cpuSeconds(pid)
        cpuUp = cpu1 - cpu0
        down = await exec(AWS, ['--endpoint-url', creds.endpoint, 's3', 'cp', 's3://bench/big.bin', join(home, 'back.bin')], env)
        cpuDown = await cpuSeconds(pid) - cpu1
      } finally {
        clearInterval(poll)
      }
      if ((await stat(join(home, 'back.bin'))).size !== size) throw new Error('the downloaded copy has the wrong size')
      await rm(join(home, 'back.bin'))
      // The client's ceiling: the same commands against a server that does nothing.
      const sink = await startS3Sink(src, size)
      let sinkUp: number, sinkDown: number
      try {
        sinkUp = await exec(AWS, ['--endpoint-url', sink.endpoint, 's3', 'cp', src, 's3://bench/big.bin'], env)
        sinkDown = await exec(AWS, ['--endpoint-url', sink.endpoint, 's3', 'cp', 's3://bench/big.bin', join(home, 'sink.bin')], env)
      } finally {
        await sink.close()
      }
      if ((await stat(join(home, 'sink.bin'))).size !== size) throw new Error('the copy from the sink has the wrong size')
      const mib = size / 1024 / 1024
      const upRatio = ddUp / up
      const downRatio = ddDown / down
      const peakAboveIdleMB = (peak - idle) / 1024 / 1024
      return {
        name: 's3-throughput',
        figures: {
          s3UpMiBps: mib / up,
          s3DownMiBps: mib / down,
          ddUpMiBps: mib / ddUp,
          ddDownMiBps: mib / ddDown,
          upRatio,
          downRatio,
          idleRssMB: idle / 1024 / 1024,
          peakRssAboveIdleMB: peakAboveIdleMB,
          peakRssAboveIdleUpMB: (peakUp - idle) / 1024 / 1024,
          agentCpuSecPerGiBUp: cpuUp / (size / 2 ** 30),
          agentCpuSecPerGiBDown: cpuDown / (size / 2 ** 30),
          sinkUpMiBps: mib / sinkUp,
          sinkDownMiBps: mib / sinkDown,
          // The best upRatio/downRatio any server could reach with this client on this machine.
          clientCeilingUpRatio: ddUp / sinkUp,
          clientCeilingDownRatio: ddDown / sinkDown
        },
        goal: 'upRatio >= 0.5, downRatio >= 0.7, peakRssAboveIdleMB <= 100',
        met: upRatio >= 0.5 && downRatio >= 0.7 && peakAboveIdleMB <= 100,
        config: { sizeBytes: size, client: 'aws-cli (Debian 2.9) s3 cp, default multipart (8 MiB parts)', baseline: 'dd bs=4M conv=fdatasync on the agent\'s data dir disk', ceiling: 'the same aws commands against scenarios/_s3-sink.ts (no auth, no hashing, no storage)', agents: 1 }
      }
    } finally {
      await cluster.destroy()
      await rm(home, { recursive: true, force: true })
    }
  }
}
