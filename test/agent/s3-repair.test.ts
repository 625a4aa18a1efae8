// Repair: kill -9 of the agent every object was stored through (it holds a
// copy of each): GET through another agent is still byte-exact, `object
// status` counts every object below its copies once the member is dead,
// and after [s3] repair_grace_ms the leader has copied them again until
// every object has its copies on the live members (counted, none below).
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, waitFor, type AgentProcess } from '../helpers/harness.js'
import { formVoters } from '../../scenarios/_raft.js'
import { S3_TOML, aws, s3Endpoint, s3Key } from '../helpers/s3.js'

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
interface Status { objects: number, belowTarget: Array<{ key: string, live: number, target: number }> }

async function status (a: AgentProcess): Promise<Status | undefined> {
  const r = await a.cli(['object', 'status', '--json'], 15_000)
  return r.code === 0 ? JSON.parse(r.stdout) as Status : undefined
}

t.test('S3 objects survive kill -9 of a holder and get their copies back after the grace period', async t => {
  const cluster = await Cluster.create(S3_TOML(4, 'repair_grace_ms = 8000'))
  const home = await mkdtemp(join(tmpdir(), 'bolt-aws-'))
  t.teardown(async () => { await cluster.destroy(); await rm(home, { recursive: true, force: true }) })
  const [a, b, c] = await formVoters(cluster, 4)
  const creds = await s3Key(a!)
  const eb = await s3Endpoint(b!)
  t.equal((await aws(home, creds, creds.endpoint, ['s3', 'mb', 's3://keep'])).code, 0)
  const files = [randomBytes(3 * 1024 * 1024 + 1), randomBytes(2 * 1024 * 1024 + 2), randomBytes(1024 * 1024 + 3)]
  for (const [i, f] of files.entries()) {
    await writeFile(join(home, `f${i}`), f)
    const cp = await aws(home, creds, creds.endpoint, ['s3', 'cp', join(home, `f${i}`), `s3://keep/f${i}`])
    t.equal(cp.code, 0, `put f${i} through A ${cp.stderr}`)
  }
  const before = await status(c!)
  t.match(before, { objects: 3, belowTarget: [] }, 'three objects, none below its copies (A + 2 peers each)')

  await a!.kill9()
  const got = await aws(home, creds, eb, ['s3', 'cp', 's3://keep/f0', join(home, 'f0.back')])
  t.equal(got.code, 0, `get through B after A died ${got.stderr}`)
  t.equal(sha(await readFile(join(home, 'f0.back'))), sha(files[0]!), 'byte-exact from the surviving copies')

  const seen: string[] = []
  const counted = await waitFor(async () => {
    const s = await status(c!)
    seen.push(s === undefined ? 'error' : `${s.belowTarget.length}`)
    return s?.belowTarget.length === 3
  }, 60_000, 300)
  t.ok(counted >= 0, `once A is dead, object status counts the three objects below their copies (the grace period keeps them so for 8 s); seen ${seen.join(',')}`)
  const repaired = await waitFor(async () => { const s = await status(c!); return s?.objects === 3 && s.belowTarget.length === 0 }, 120_000, 500)
  t.ok(repaired >= 0, 'after the grace period every object has its copies again on the live members')
  for (const [i, f] of files.entries()) {
    const r = await aws(home, creds, eb, ['s3', 'cp', `s3://keep/f${i}`, join(home, `f${i}.again`)])
    t.equal(r.code, 0)
    t.equal(sha(await readFile(join(home, `f${i}.again`))), sha(f), `f${i} byte-exact after repair`)
  }
})
