// The S3 endpoint against the real aws-cli (Debian's 2.9 at /usr/bin/aws)
// and real agents: a key made through one agent works on every agent;
// buckets and objects written through A are listed and read byte-exact
// through B and C; a 64 MiB `aws s3 cp` goes multipart; head-object's ETag
// is what clients expect; an aws-chunked body with a CRC32 trailer is
// checked; bad requests get S3's error codes and store nothing.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster } from '../helpers/harness.js'
import { formVoters } from '../../scenarios/_raft.js'
import { S3_TOML, aws, s3Endpoint, s3Key } from '../helpers/s3.js'

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex')
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

t.test('aws-cli against three agents: mb, cp (multipart), ls, cp back through another agent, head-object, rm', async t => {
  const cluster = await Cluster.create(S3_TOML(3))
  const home = await mkdtemp(join(tmpdir(), 'bolt-aws-'))
  t.teardown(async () => { await cluster.destroy(); await rm(home, { recursive: true, force: true }) })
  const [a, b, c] = await formVoters(cluster, 3)
  const creds = await s3Key(a!)
  t.match(creds, { accessKey: /^BK[A-Z2-7]{18}$/, endpoint: /^http:\/\/127\.0\.0\.1:\d+$/ }, 'key create prints the key and this agent\'s endpoint')
  const [ea, eb, ec] = [creds.endpoint, await s3Endpoint(b!), await s3Endpoint(c!)]

  const mb = await aws(home, creds, eb, ['s3', 'mb', 's3://saves'])
  t.equal(mb.code, 0, `mb through B (a key made through A) ${mb.stderr}`)

  const small = randomBytes(100_000)
  const big = randomBytes(64 * 1024 * 1024 + 12345)
  await writeFile(join(home, 'small.bin'), small)
  await writeFile(join(home, 'big.bin'), big)
  const cp1 = await aws(home, creds, ea, ['s3', 'cp', join(home, 'small.bin'), 's3://saves/dir/small.bin'])
  t.equal(cp1.code, 0, `cp small through A ${cp1.stderr}`)
  const cp2 = await aws(home, creds, ea, ['s3', 'cp', join(home, 'big.bin'), 's3://saves/big.bin'], 300_000)
  t.equal(cp2.code, 0, `cp 64 MiB through A (multipart) ${cp2.stderr}`)

  const ls = await aws(home, creds, ec, ['s3', 'ls', 's3://saves/'])
  t.equal(ls.code, 0, `ls through C ${ls.stderr}`)
  t.match(ls.stdout, /PRE dir\//, 'the common prefix')
  t.match(ls.stdout, new RegExp(`${big.length} big\\.bin`), 'the big object with its size')
  const lsr = await aws(home, creds, ec, ['s3', 'ls', '--recursive', 's3://saves'])
  t.match(lsr.stdout, /100000 dir\/small\.bin/, 'recursive listing has the small one')

  const back = await aws(home, creds, ec, ['s3', 'cp', 's3://saves/big.bin', join(home, 'big.back')], 300_000)
  t.equal(back.code, 0, `cp back through C ${back.stderr}`)
  t.equal(sha(await readFile(join(home, 'big.back'))), sha(big), 'byte-exact through another agent')

  const head = await aws(home, creds, eb, ['s3api', 'head-object', '--bucket', 'saves', '--key', 'dir/small.bin'])
  t.equal(head.code, 0, head.stderr)
  t.equal((JSON.parse(head.stdout) as { ETag: string }).ETag, `"${md5(small)}"`, 'single-part ETag: MD5 of the object')
  const headBig = JSON.parse((await aws(home, creds, eb, ['s3api', 'head-object', '--bucket', 'saves', '--key', 'big.bin'])).stdout) as { ETag: string, ContentLength: number }
  t.match(headBig.ETag, /^"[0-9a-f]{32}-\d+"$/, 'multipart ETag: MD5 of the parts\' MD5s, -N')
  t.equal(headBig.ContentLength, big.length)

  const range = await aws(home, creds, ea, ['s3api', 'get-object', '--bucket', 'saves', '--key', 'big.bin', '--range', 'bytes=1000-2999', join(home, 'range.bin')])
  t.equal(range.code, 0, range.stderr)
  t.equal(sha(await readFile(join(home, 'range.bin'))), sha(big.subarray(1000, 3000)), 'a Range read')

  // aws-chunked with a trailing CRC32 (what aws-cli 2.23+ does by default; 2.9 only when asked).
  await writeFile(join(home, 'crc.bin'), small.subarray(0, 70_000))
  const crc = await aws(home, creds, eb, ['s3api', 'put-object', '--bucket', 'saves', '--key', 'crc.bin', '--body', join(home, 'crc.bin'), '--checksum-algorithm', 'CRC32'])
  t.equal(crc.code, 0, `put-object --checksum-algorithm CRC32 ${crc.stderr}`)
  t.match(JSON.parse(crc.stdout), { ChecksumCRC32: /^[A-Za-z0-9+/]{6}==$/ }, 'the checksum is answered')
  const crcBack = await aws(home, creds, ec, ['s3', 'cp', 's3://saves/crc.bin', join(home, 'crc.back')])
  t.equal(crcBack.code, 0, crcBack.stderr)
  t.equal(sha(await readFile(join(home, 'crc.back'))), sha(small.subarray(0, 70_000)), 'stored byte-exact')

  const rmNonEmpty = await aws(home, creds, ea, ['s3api', 'delete-bucket', '--bucket', 'saves'])
  t.match(rmNonEmpty.stderr, /BucketNotEmpty/, 'a bucket with objects is not deleted')
  const copy = await aws(home, creds, eb, ['s3', 'cp', 's3://saves/big.bin', 's3://saves/copy/big.bin'])
  t.equal(copy.code, 0, `CopyObject (server side) ${copy.stderr}`)
  const copied = JSON.parse((await aws(home, creds, ec, ['s3api', 'head-object', '--bucket', 'saves', '--key', 'copy/big.bin'])).stdout) as { ETag: string, ContentLength: number }
  t.same([copied.ETag, copied.ContentLength], [headBig.ETag, big.length], 'the copy has the source\'s ETag and size')
  const rm1 = await aws(home, creds, eb, ['s3', 'rm', 's3://saves/dir/small.bin'])
  t.equal(rm1.code, 0, `rm (DeleteObject) ${rm1.stderr}`)
  const rmr = await aws(home, creds, eb, ['s3', 'rm', '--recursive', 's3://saves/'])
  t.equal(rmr.code, 0, `rm --recursive (DeleteObjects) ${rmr.stderr}`)
  t.match(rmr.stdout, /delete: s3:\/\/saves\/copy\/big\.bin/)
  const gone = await aws(home, creds, ec, ['s3api', 'head-object', '--bucket', 'saves', '--key', 'big.bin'])
  t.not(gone.code, 0, 'removed objects are gone on every agent')
  t.match(gone.stderr, /404|Not Found/)
  const rb = await aws(home, creds, ea, ['s3', 'rb', 's3://saves'])
  t.equal(rb.code, 0, `rb ${rb.stderr}`)
})
