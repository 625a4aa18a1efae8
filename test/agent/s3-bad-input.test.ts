// Bad requests to a real agent's S3 endpoint, each answered with S3's error
// code and storing nothing: a wrong secret, a body that does not match its
// signed hash, a tampered aws-chunked chunk, a part under 5 MiB in the
// middle of a multipart upload, a CompleteMultipartUpload naming a part
// never uploaded, malformed XML, a key over 1024 bytes, a request dated 20
// minutes ago. Plus presigned URLs fetched with curl, refused once expired,
// and an aws-chunked body with a signed CRC32 trailer accepted.
import t from 'tap'
import { execFile } from 'node:child_process'
import { createHash, createHmac, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { SignatureV4 } from '@smithy/signature-v4'
import { Hash } from '@smithy/hash-node'
import { HttpRequest } from '@smithy/core/protocols'
import { Cluster, waitFor } from '../helpers/harness.js'
import { S3_TOML, aws, s3Key } from '../helpers/s3.js'

const sha256 = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex')
const EMPTY = sha256('')

interface Signed { status: number, body: string, bytes: Buffer, headers: Headers }

function client (endpoint: string, creds: { accessKey: string, secretKey: string }) {
  const url = new URL(endpoint)
  const signer = new SignatureV4({ credentials: { accessKeyId: creds.accessKey, secretAccessKey: creds.secretKey }, region: 'us-east-1', service: 's3', sha256: Hash.bind(null, 'sha256'), uriEscapePath: false })
  /** Signs with smithy (as SDKs do), then sends `send` (default: the signed body). */
  return async (method: string, path: string, o: { query?: Record<string, string>, headers?: Record<string, string>, body?: Buffer, send?: Buffer, payloadHash?: string, date?: Date } = {}): Promise<Signed & { authorization: string, amzDate: string }> => {
    const body = o.body ?? Buffer.alloc(0)
    const req = new HttpRequest({ method, protocol: 'http:', hostname: url.hostname, port: Number(url.port), path, query: o.query ?? {}, headers: { host: url.host, 'x-amz-content-sha256': o.payloadHash ?? sha256(body), ...o.headers } })
    const signed = await signer.sign(req, o.date !== undefined ? { signingDate: o.date } : {}) as unknown as { headers: Record<string, string>, query: Record<string, string> }
    const qs = Object.entries(signed.query).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')
    const sent = o.send ?? body
    const res = await fetch(`${endpoint}${path}${qs !== '' ? '?' + qs : ''}`, { method, headers: { ...signed.headers, 'content-length': String(sent.length) }, ...(sent.length > 0 || method === 'PUT' || method === 'POST' ? { body: sent } : {}), signal: AbortSignal.timeout(60_000) })
    const bytes = Buffer.from(await res.arrayBuffer())
    return { status: res.status, body: bytes.toString(), bytes, headers: res.headers, authorization: signed.headers.authorization ?? '', amzDate: signed.headers['x-amz-date'] ?? '' }
  }
}

const code = (xml: string): string => /<Code>([^<]+)<\/Code>/.exec(xml)?.[1] ?? ''
const curl = async (url: string): Promise<{ status: number, body: string }> => await new Promise(resolve => {
  execFile('curl', ['-s', '-w', '\n%{http_code}', url], { timeout: 30_000 }, (_err, stdout) => {
    const i = stdout.lastIndexOf('\n')
    resolve({ status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) })
  })
})

t.test('S3 bad input: the S3 error code, nothing stored', async t => {
  const cluster = await Cluster.create(S3_TOML(1, 'domain = "s3.localhost"\ncollect_delay_ms = 300'))
  t.teardown(async () => { await cluster.destroy() })
  const a = await cluster.add('a')
  await a.start(['init'])
  const creds = await s3Key(a)
  const s3 = client(creds.endpoint, creds)
  t.equal((await s3('PUT', '/bkt')).status, 200, 'bucket created')
  const listKeys = async (): Promise<string[]> => [...(await s3('GET', '/bkt', { query: { 'list-type': '2' } })).body.matchAll(/<Key>([^<]*)<\/Key>/g)].map(m => m[1]!)
  // Bodies are staged in the blob store's tmp/ while checked (s3-tmp/ held them whole before).
  const tmpEmpty = async (): Promise<boolean> => (await readdir(join(a.dataDir, 's3-tmp'))).length === 0 && (await readdir(join(a.dataDir, 'blobs', 'tmp'))).length === 0

  await t.test('wrong secret: SignatureDoesNotMatch', async t => {
    const bad = client(creds.endpoint, { accessKey: creds.accessKey, secretKey: creds.secretKey + 'x' })
    const r = await bad('PUT', '/bkt/wrong', { body: Buffer.from('hello') })
    t.equal(r.status, 403)
    t.equal(code(r.body), 'SignatureDoesNotMatch')
    const unknown = await client(creds.endpoint, { accessKey: 'BKNOSUCHKEY000000000', secretKey: 'x' })('GET', '/')
    t.equal(code(unknown.body), 'InvalidAccessKeyId', 'an unknown key')
  })

  await t.test('a body that is not the one signed: XAmzContentSHA256Mismatch', async t => {
    const r = await s3('PUT', '/bkt/tampered', { body: Buffer.from('the signed body'), send: Buffer.from('the sent! body') })
    t.equal(r.status, 400)
    t.equal(code(r.body), 'XAmzContentSHA256Mismatch')
    const md5 = await s3('PUT', '/bkt/md5', { body: Buffer.from('abc'), headers: { 'content-md5': createHash('md5').update('abd').digest('base64') } })
    t.equal(code(md5.body), 'BadDigest', 'a Content-MD5 that does not match')
  })

  await t.test('a large body (hashed in a thread) that fails its checks stores no chunk', async t => {
    const blobs = async (): Promise<number> => (await readdir(join(a.dataDir, 'blobs', 'blobs', 'sha256'))).length
    const n0 = await blobs()
    const big = randomBytes(9 * 1024 * 1024)
    const sent = Buffer.from(big)
    sent[7 * 1024 * 1024] ^= 1
    const r = await s3('PUT', '/bkt/big-tampered', { body: big, send: sent })
    t.equal(code(r.body), 'XAmzContentSHA256Mismatch')
    const md5 = await s3('PUT', '/bkt/big-md5', { body: big, headers: { 'content-md5': createHash('md5').update(sent).digest('base64') } })
    t.equal(code(md5.body), 'BadDigest', 'a Content-MD5 that does not match')
    const crc = await s3('PUT', '/bkt/big-crc', { body: big, headers: { 'x-amz-checksum-crc32': Buffer.from([1, 2, 3, 4]).toString('base64') } })
    t.equal(code(crc.body), 'BadDigest', 'a CRC32 that does not match')
    t.equal(await blobs(), n0, 'no chunk of a refused body is in the store')
    t.ok(await tmpEmpty(), 'and none is left staged')
    const ok = await s3('PUT', '/bkt/big-ok', { body: big, headers: { 'content-md5': createHash('md5').update(big).digest('base64'), 'x-amz-checksum-crc32': Buffer.from(crc32(big).toString(16).padStart(8, '0'), 'hex').toString('base64') } })
    t.equal(ok.status, 200, 'the same body, intact, is stored')
    t.equal(ok.headers.get('etag'), `"${createHash('md5').update(big).digest('hex')}"`)
    const back = await s3('GET', '/bkt/big-ok')
    t.ok(back.bytes.equals(big), 'and reads back byte-exact')
    t.equal((await s3('DELETE', '/bkt/big-ok')).status, 204)
  })

  await t.test('a request dated 20 minutes ago: RequestTimeTooSkewed', async t => {
    const r = await s3('GET', '/', { date: new Date(Date.now() - 20 * 60_000) })
    t.equal(r.status, 403)
    t.equal(code(r.body), 'RequestTimeTooSkewed')
  })

  await t.test('a key over 1024 bytes: KeyTooLongError', async t => {
    const r = await s3('PUT', '/bkt/' + 'k'.repeat(1025), { body: Buffer.from('x') })
    t.equal(code(r.body), 'KeyTooLongError')
  })

  await t.test('multipart: small middle part (EntityTooSmall), a part never uploaded (InvalidPart), malformed XML', async t => {
    const init = await s3('POST', '/bkt/mp', { query: { uploads: '' } })
    const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(init.body)?.[1] ?? ''
    t.match(uploadId, /^[0-9a-f]{32}$/)
    const etags: string[] = []
    for (const n of [1, 2]) {
      const r = await s3('PUT', '/bkt/mp', { query: { partNumber: String(n), uploadId }, body: randomBytes(1024 * 1024) })
      t.equal(r.status, 200, `part ${n} uploaded`)
      etags.push(r.headers.get('etag') ?? '')
    }
    const xml = (parts: Array<[number, string]>): Buffer => Buffer.from(`<CompleteMultipartUpload>${parts.map(([n, e]) => `<Part><PartNumber>${n}</PartNumber><ETag>${e}</ETag></Part>`).join('')}</CompleteMultipartUpload>`)
    const small = await s3('POST', '/bkt/mp', { query: { uploadId }, body: xml([[1, etags[0]!], [2, etags[1]!]]) })
    t.equal(code(small.body), 'EntityTooSmall', 'a 1 MiB part that is not the last')
    const unknown = await s3('POST', '/bkt/mp', { query: { uploadId }, body: xml([[1, etags[0]!], [3, etags[1]!]]) })
    t.equal(code(unknown.body), 'InvalidPart', 'part 3 was never uploaded')
    const malformed = await s3('POST', '/bkt/mp', { query: { uploadId }, body: Buffer.from('<CompleteMultipartUpload><Part><PartNumber>1</Part>') })
    t.equal(code(malformed.body), 'MalformedXML')
    const parts = await s3('GET', '/bkt/mp', { query: { uploadId } })
    t.equal([...parts.body.matchAll(/<PartNumber>/g)].length, 2, 'ListParts: the upload is still open with its two parts')
    const abort = await s3('DELETE', '/bkt/mp', { query: { uploadId } })
    t.equal(abort.status, 204, 'aborted')
    t.equal(code((await s3('GET', '/bkt/mp', { query: { uploadId } })).body), 'NoSuchUpload')
  })

  await t.test('aws-chunked: signed chunks with a signed CRC32 trailer are stored; a tampered chunk is refused', async t => {
    const data = randomBytes(200_000)
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(crc32(data))
    const encode = (seed: string, amzDate: string, tamper: boolean): Buffer => {
      const scope = `${amzDate.slice(0, 8)}/us-east-1/s3/aws4_request`
      const kDate = createHmac('sha256', 'AWS4' + creds.secretKey).update(amzDate.slice(0, 8)).digest()
      const key = createHmac('sha256', createHmac('sha256', createHmac('sha256', kDate).update('us-east-1').digest()).update('s3').digest()).update('aws4_request').digest()
      let prev = seed
      const out: Buffer[] = []
      for (let i = 0; i <= data.length; i += 65536) {
        const d = data.subarray(i, i + 65536)
        prev = createHmac('sha256', key).update(['AWS4-HMAC-SHA256-PAYLOAD', amzDate, scope, prev, EMPTY, sha256(d)].join('\n')).digest('hex')
        const sent = tamper && i === 65536 ? Buffer.from(d).fill(0, 0, 1) : d
        out.push(Buffer.from(`${d.length.toString(16)};chunk-signature=${prev}\r\n`), sent, Buffer.from('\r\n'))
        if (d.length === 0) break
      }
      if (data.length % 65536 !== 0) {
        prev = createHmac('sha256', key).update(['AWS4-HMAC-SHA256-PAYLOAD', amzDate, scope, prev, EMPTY, EMPTY].join('\n')).digest('hex')
        out.push(Buffer.from(`0;chunk-signature=${prev}\r\n`))
      }
      const trailer = `x-amz-checksum-crc32:${crc.toString('base64')}`
      const tsig = createHmac('sha256', key).update(['AWS4-HMAC-SHA256-TRAILER', amzDate, scope, prev, sha256(trailer + '\n')].join('\n')).digest('hex')
      out.push(Buffer.from(`${trailer}\r\nx-amz-trailer-signature:${tsig}\r\n\r\n`))
      return Buffer.concat(out)
    }
    // Sign the headers first (seed signature), then encode the body with it.
    const headers = { 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': String(data.length), 'x-amz-trailer': 'x-amz-checksum-crc32' }
    const signer = new SignatureV4({ credentials: { accessKeyId: creds.accessKey, secretAccessKey: creds.secretKey }, region: 'us-east-1', service: 's3', sha256: Hash.bind(null, 'sha256'), uriEscapePath: false })
    const url = new URL(creds.endpoint)
    for (const tamper of [true, false]) {
      const key = tamper ? 'chunked-bad' : 'chunked'
      const req = new HttpRequest({ method: 'PUT', protocol: 'http:', hostname: url.hostname, port: Number(url.port), path: `/bkt/${key}`, headers: { host: url.host, 'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER', ...headers } })
      const signed = await signer.sign(req) as unknown as { headers: Record<string, string> }
      const seed = /Signature=([0-9a-f]{64})/.exec(signed.headers.authorization ?? '')?.[1] ?? ''
      const body = encode(seed, signed.headers['x-amz-date'] ?? '', tamper)
      const res = await fetch(`${creds.endpoint}/bkt/${key}`, { method: 'PUT', headers: { ...signed.headers, 'content-length': String(body.length) }, body, signal: AbortSignal.timeout(60_000) })
      const text = await res.text()
      if (tamper) t.equal(code(text), 'SignatureDoesNotMatch', 'a tampered chunk is refused')
      else {
        t.equal(res.status, 200, `stored ${text}`)
        t.equal(res.headers.get('x-amz-checksum-crc32'), crc.toString('base64'), 'the trailing CRC32 was checked and is answered')
      }
    }
    const back = await s3('GET', '/bkt/chunked')
    t.equal(sha256(back.bytes), sha256(data), 'read back byte-exact')
  })

  await t.test('presigned GET with curl; the same URL after expiry: 403', async t => {
    const put = await s3('PUT', '/bkt/shared.txt', { body: Buffer.from('shared bytes') })
    t.equal(put.status, 200)
    // Presigned by the real aws-cli (UNSIGNED-PAYLOAD, as every S3 presigner signs).
    const home = await mkdtemp(join(tmpdir(), 'bolt-aws-'))
    t.teardown(async () => { await rm(home, { recursive: true, force: true }) })
    const presign = async (expiresIn: number): Promise<string> => {
      const r = await aws(home, creds, creds.endpoint, ['s3', 'presign', 's3://bkt/shared.txt', '--expires-in', String(expiresIn)])
      if (r.code !== 0) throw new Error(`aws s3 presign: ${r.stderr}`)
      return r.stdout.trim()
    }
    const ok = await curl(await presign(600))
    t.equal(ok.status, 200)
    t.equal(ok.body, 'shared bytes', 'curl gets the object')
    const short = await presign(1)
    const expired = await waitFor(async () => (await curl(short)).status === 403, 10_000, 300)
    t.ok(expired >= 0, 'once expired, the same URL is refused with 403')
    t.match((await curl(short)).body, /<Code>AccessDenied<\/Code><Message>Request has expired/)
  })

  await t.test('key limits and revocation: read-only, one bucket, s3 key list|delete', async t => {
    const ro = await s3Key(a, ['--read-only'])
    const one = await s3Key(a, ['--bucket', 'bkt'])
    const roClient = client(creds.endpoint, ro)
    t.equal((await roClient('GET', '/bkt/shared.txt')).status, 200, 'a read-only key reads')
    t.equal(code((await roClient('PUT', '/bkt/ro.txt', { body: Buffer.from('no') })).body), 'AccessDenied', 'and may not write')
    const oneClient = client(creds.endpoint, one)
    t.equal(code((await oneClient('PUT', '/other-bucket')).body), 'AccessDenied', 'a one-bucket key may not touch another bucket')
    t.equal((await oneClient('GET', '/bkt', { query: { 'list-type': '2' } })).status, 200, 'but lists its own')
    const list = await a.cli(['s3', 'key', 'list', '--json'])
    const rows = JSON.parse(list.stdout) as Array<{ accessKey: string, bucket: string | null, readOnly: boolean }>
    t.match(rows, [{ accessKey: creds.accessKey, bucket: null, readOnly: false }, { accessKey: ro.accessKey, readOnly: true }, { accessKey: one.accessKey, bucket: 'bkt' }], 'key list (no secrets)')
    t.notMatch(list.stdout, /secret/i, 'never a secret in the list')
    t.equal((await a.cli(['s3', 'key', 'delete', ro.accessKey])).code, 0, 'delete')
    t.equal(code((await roClient('GET', '/bkt/shared.txt')).body), 'InvalidAccessKeyId', 'a deleted key is refused at once')
    const again = await a.cli(['s3', 'key', 'delete', ro.accessKey])
    t.equal(again.code, 1, 'deleting it twice: exit 1')
    t.match(again.stderr, /no S3 access key/)
    t.equal((await a.cli(['s3', 'key', 'create', '--bucket', 'NO'])).code, 2, 'a bad bucket name: exit 2')
  })

  await t.test('a deleted object\'s blobs are freed; an object still named by another key is not', async t => {
    const blobs = async (): Promise<number> => (await readdir(join(a.dataDir, 'blobs', 'blobs', 'sha256'))).length
    const n0 = await blobs()
    const body = randomBytes(3 * 1024 * 1024)
    t.equal((await s3('PUT', '/bkt/gc-1', { body })).status, 200)
    t.equal((await s3('PUT', '/bkt/gc-2', { body })).status, 200, 'the same bytes under a second key')
    const n1 = await blobs()
    t.ok(n1 > n0, `the object's manifest and chunks are stored (${n0} -> ${n1} blobs)`)
    t.equal((await s3('DELETE', '/bkt/gc-1')).status, 204)
    // Give the collector several sweeps: the object is still named by gc-2.
    await new Promise(resolve => setTimeout(resolve, 2000))
    t.equal(await blobs(), n1, 'nothing freed while another key names the object')
    t.equal(sha256((await s3('GET', '/bkt/gc-2')).bytes), sha256(body), 'and it still reads back')
    t.equal((await s3('DELETE', '/bkt/gc-2')).status, 204)
    t.ok(await waitFor(async () => (await blobs()) === n0, 20_000, 200) >= 0, 'once no key names it, its blobs are deleted')
  })

  await t.test('virtual-host style: BUCKET.DOMAIN in Host names the bucket', async t => {
    const url = new URL(creds.endpoint)
    const host = `bkt.s3.localhost:${url.port}`
    const signer = new SignatureV4({ credentials: { accessKeyId: creds.accessKey, secretAccessKey: creds.secretKey }, region: 'us-east-1', service: 's3', sha256: Hash.bind(null, 'sha256'), uriEscapePath: false })
    const signed = await signer.sign(new HttpRequest({ method: 'GET', protocol: 'http:', hostname: `bkt.s3.localhost`, port: Number(url.port), path: '/shared.txt', headers: { host, 'x-amz-content-sha256': EMPTY } })) as unknown as { headers: Record<string, string> }
    // fetch() will not send another Host than the URL's: node:http will.
    const { request } = await import('node:http')
    const got = await new Promise<{ status: number, body: string }>((resolve, reject) => {
      const req = request({ host: url.hostname, port: Number(url.port), path: '/shared.txt', method: 'GET', headers: signed.headers }, res => {
        const parts: Buffer[] = []
        res.on('data', (c: Buffer) => parts.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }))
      })
      req.on('error', reject)
      req.end()
    })
    t.same(got, { status: 200, body: 'shared bytes' }, 'the object of bucket bkt')
  })

  t.same((await listKeys()).sort(), ['chunked', 'shared.txt'], 'nothing else was stored')
  t.ok(await tmpEmpty(), 'no request body left in the temp dir')
  const uploads = await s3('GET', '/bkt', { query: { uploads: '' } })
  t.notMatch(uploads.body, /<Upload>/, 'no upload left open')
  const api = JSON.parse(await readFile(join(a.dataDir, 'api.json'), 'utf8')) as { url: string, token: string }
  const metrics = await (await fetch(`${api.url}/metrics`, { headers: { authorization: `Bearer ${api.token}` } })).text()
  t.match(metrics, /bolt_s3_requests_total\{op="PutObject"\} [1-9]/, 'requests counted per operation')
  t.match(metrics, /bolt_s3_requests_total\{op="SignatureDoesNotMatch"\} [1-9]/, 'and refusals per S3 error code')
  t.match(metrics, /bolt_s3_bytes_total\{direction="in"\} [1-9]/, 'bytes in')
  t.match(metrics, /bolt_s3_bytes_total\{direction="out"\} [1-9]/, 'bytes out')
})
