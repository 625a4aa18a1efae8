// rclone and s3cmd, configured only through env and temp files, against
// three real agents: `rclone sync` of 500 small and 5 large files (multipart)
// into a bucket through A, `rclone check` against the source through B finds
// no difference; `s3cmd put|ls|get|del` through C, byte-exact.
import t from 'tap'
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster } from '../helpers/harness.js'
import { formVoters } from '../../scenarios/_raft.js'
import { S3_TOML, s3Endpoint, s3Key } from '../helpers/s3.js'

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

async function run (cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 300_000): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise(resolve => {
    execFile(cmd, args, { env: { PATH: '/usr/bin:/bin', ...env }, timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? 1), stdout, stderr })
    })
  })
}

t.test('rclone sync through A, rclone check through B; s3cmd through C', async t => {
  const cluster = await Cluster.create(S3_TOML(3))
  const home = await mkdtemp(join(tmpdir(), 'bolt-s3clients-'))
  t.teardown(async () => { await cluster.destroy(); await rm(home, { recursive: true, force: true }) })
  const [a, b, c] = await formVoters(cluster, 3)
  const creds = await s3Key(a!)
  const [ea, eb, ec] = [creds.endpoint, await s3Endpoint(b!), await s3Endpoint(c!)]

  const src = join(home, 'tree')
  for (let i = 0; i < 500; i++) {
    const dir = join(src, `d${i % 7}`)
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, `small-${i}.bin`), randomBytes(100 + (i * 37) % 4000))
  }
  for (let i = 0; i < 5; i++) await writeFile(join(src, `large-${i}.bin`), randomBytes(12 * 1024 * 1024 + i * 1000))
  const conf = join(home, 'rclone.conf')
  await writeFile(conf, '')
  const remote = (name: string, endpoint: string): NodeJS.ProcessEnv => {
    const p = `RCLONE_CONFIG_${name.toUpperCase()}_`
    return { [`${p}TYPE`]: 's3', [`${p}PROVIDER`]: 'Other', [`${p}ACCESS_KEY_ID`]: creds.accessKey, [`${p}SECRET_ACCESS_KEY`]: creds.secretKey, [`${p}ENDPOINT`]: endpoint, [`${p}REGION`]: 'us-east-1', [`${p}FORCE_PATH_STYLE`]: 'true' }
  }
  const env = { HOME: home, RCLONE_CONFIG: conf, ...remote('bolta', ea), ...remote('boltb', eb) }

  const mkdirB = await run('/usr/bin/rclone', ['mkdir', 'bolta:tree'], env)
  t.equal(mkdirB.code, 0, `rclone mkdir ${mkdirB.stderr}`)
  const sync = await run('/usr/bin/rclone', ['sync', src, 'bolta:tree', '--transfers', '8', '--s3-upload-cutoff', '5M', '--s3-chunk-size', '5M'], env, 600_000)
  t.equal(sync.code, 0, `rclone sync through A ${sync.stderr.slice(-2000)}`)
  const check = await run('/usr/bin/rclone', ['check', src, 'boltb:tree'], env)
  t.equal(check.code, 0, `rclone check through B ${check.stderr.slice(-2000)}`)
  t.match(check.stderr, /0 differences found/)
  t.match(check.stderr, /505 matching files/)
  // One change, then sync again: only that file differs, and sync fixes it.
  await writeFile(join(src, 'd0', 'small-0.bin'), randomBytes(999))
  t.not((await run('/usr/bin/rclone', ['check', src, 'boltb:tree'], env)).code, 0, 'a changed file is a difference')
  t.equal((await run('/usr/bin/rclone', ['sync', src, 'bolta:tree'], env)).code, 0)
  t.equal((await run('/usr/bin/rclone', ['check', src, 'boltb:tree'], env)).code, 0, 'identical again after sync')

  const s3cfg = join(home, 's3cfg')
  const hostPort = new URL(ec).host
  await writeFile(s3cfg, `[default]\naccess_key = ${creds.accessKey}\nsecret_key = ${creds.secretKey}\nhost_base = ${hostPort}\nhost_bucket = ${hostPort}\nuse_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n`)
  const s3cmd = async (...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> => await run('/usr/bin/s3cmd', ['-c', s3cfg, ...args], { HOME: home })
  const mb = await s3cmd('mb', 's3://cmd-bucket')
  t.equal(mb.code, 0, `s3cmd mb ${mb.stderr}`)
  const file = randomBytes(20 * 1024 * 1024 + 5)
  await writeFile(join(home, 'f.bin'), file)
  const put = await s3cmd('put', join(home, 'f.bin'), 's3://cmd-bucket/some/f.bin')
  t.equal(put.code, 0, `s3cmd put (multipart at 15 MiB) ${put.stderr}`)
  const ls = await s3cmd('ls', '--recursive', 's3://cmd-bucket')
  t.match(ls.stdout, new RegExp(`${file.length}\\s+s3://cmd-bucket/some/f\\.bin`), `s3cmd ls ${ls.stderr}`)
  const get = await s3cmd('get', 's3://cmd-bucket/some/f.bin', join(home, 'f.back'))
  t.equal(get.code, 0, `s3cmd get ${get.stderr}`)
  t.equal(sha(await readFile(join(home, 'f.back'))), sha(file), 'byte-exact')
  const del = await s3cmd('del', 's3://cmd-bucket/some/f.bin')
  t.equal(del.code, 0, `s3cmd del ${del.stderr}`)
  const after = await s3cmd('ls', '--recursive', 's3://cmd-bucket')
  t.notMatch(after.stdout, /f\.bin/, 'gone')
})
