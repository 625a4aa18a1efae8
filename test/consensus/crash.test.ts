// kill -9 while writing: a child process proposes through RaftNode on
// RaftStorage and reports each acknowledged write; after SIGKILL at a random
// point the log is reopened and every acknowledged write must be there.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { RaftNode, RaftStorage, type NormalEntry } from '../../consensus/index.js'

const writer = fileURLToPath(new URL('./fixtures/raft-writer.js', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'raft-kill-'))
t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })

async function runAndKill (t: Test, round: number, acksBeforeKill: number): Promise<string[]> {
  const child = spawn(process.execPath, [writer, dir, String(round)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const acked: string[] = []
  let buf = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`writer produced ${acked.length} acks in 30 s`)) }, 30_000)
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      const lines = buf.split('\n')
      buf = lines.pop() ?? ''
      for (const l of lines) if (l.startsWith('ack ')) acked.push(l.slice(4))
      if (acked.length >= acksBeforeKill && child.exitCode === null && !child.killed) {
        child.kill('SIGKILL')
      }
    })
    child.on('exit', () => { clearTimeout(timer); resolve() })
    child.on('error', reject)
  })
  t.equal(child.signalCode, 'SIGKILL', `round ${round}: writer was killed`)
  return acked
}

async function recover (): Promise<{ applied: string[], commit: number }> {
  // A tiny window makes recovery replay committed entries through the read-back-from-disk path.
  const storage = await RaftStorage.open(dir, { windowEntries: 16, fetchBatch: 32 })
  const applied: string[] = []
  const dec = new TextDecoder()
  const node = new RaftNode({
    id: 'solo',
    storage,
    tickMs: 5,
    send: () => {},
    apply: (e: NormalEntry) => { applied.push(dec.decode(e.data)) },
    snapshot: async () => new TextEncoder().encode(JSON.stringify(applied)),
    restore: (data: Uint8Array) => { applied.splice(0, applied.length, ...(JSON.parse(dec.decode(data)) as string[])) },
  })
  await node.start()
  const deadline = Date.now() + 10_000
  while (node.status().applied < node.status().commit || node.status().role !== 'leader') {
    if (Date.now() > deadline) throw new Error('recovered node did not catch up')
    await new Promise(resolve => setTimeout(resolve, 5))
  }
  const commit = node.status().commit
  await node.stop()
  await storage.close()
  return { applied, commit }
}

t.test('acknowledged writes survive SIGKILL at random points, across repeated crashes', async t => {
  const allAcked: string[] = []
  for (let round = 0; round < 4; round++) {
    const acked = await runAndKill(t, round, 100 + Math.floor(Math.random() * 400))
    allAcked.push(...acked)
    const { applied } = await recover()
    const have = new Set(applied)
    const missing = allAcked.filter(p => !have.has(p))
    t.same(missing, [], `round ${round}: ${acked.length} acked this round, ${applied.length} applied after recovery`)
    t.equal(have.size, applied.length, 'no entry applied twice')
  }
})
