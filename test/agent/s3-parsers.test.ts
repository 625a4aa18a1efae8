// The S3 endpoint's request parsers, fuzzed with fast-check: the SigV4
// credential parsers and canonical request, the aws-chunked decoder and the
// XML body parsers throw only S3Error on any input, never hang and never
// accept what they should not; and known-good inputs decode exactly.
import t from 'tap'
import fc from 'fast-check'
import { createHash, createHmac } from 'node:crypto'
import { SignatureV4 } from '@smithy/signature-v4'
import { Hash } from '@smithy/hash-node'
import { HttpRequest } from '@smithy/core/protocols'
import { AwsChunkedDecoder } from '../../agent/s3/aws-chunked.js'
import { S3Error } from '../../agent/s3/errors.js'
import { canonicalRequest, parseAuthorizationHeader, parsePresignedQuery, parseRawQuery, verifySignature, signingKey, scopeOf, EMPTY_SHA256 } from '../../agent/s3/sigv4.js'
import { parseCompleteBody, parseDeleteBody, parseXmlBody } from '../../agent/s3/xml.js'
import { decodeToken, encodeToken, listPage } from '../../agent/s3/list.js'
import type { S3ObjectRecord } from '../../agent/s3/s3-state.js'

const onlyS3Errors = (fn: () => unknown): void => {
  try { fn() } catch (err) { if (!(err instanceof S3Error)) throw err }
}

t.test('fuzz: SigV4 parsers throw only S3Error', async t => {
  fc.assert(fc.property(fc.string({ maxLength: 600 }), fc.string({ maxLength: 40 }), fc.string({ maxLength: 80 }), (auth, date, sha) => {
    onlyS3Errors(() => parseAuthorizationHeader(auth, { 'x-amz-date': date, 'x-amz-content-sha256': sha }))
    onlyS3Errors(() => parseAuthorizationHeader(`AWS4-HMAC-SHA256 ${auth}`, { 'x-amz-date': '20260101T000000Z', 'x-amz-content-sha256': sha }))
    onlyS3Errors(() => parseRawQuery(auth))
    onlyS3Errors(() => { const q = parseRawQuery(auth); parsePresignedQuery(q); canonicalRequest('GET', '/' + auth, q, { host: 'h' }, { accessKey: 'A', shortDate: '20260101', region: 'r', service: 's3', amzDate: '20260101T000000Z', signedHeaders: ['host', 'x'], signature: '', payloadHash: 'UNSIGNED-PAYLOAD' }) })
  }), { numRuns: 2000 })
  t.pass('no other error')
})

t.test('SigV4: a request signed by @smithy/signature-v4 verifies; any change to it does not', async t => {
  const creds = { accessKeyId: 'BKTESTKEY000000000000', secretAccessKey: 'secret-secret-secret-secret-secret-00' }
  const signer = new SignatureV4({ credentials: creds, region: 'us-east-1', service: 's3', sha256: Hash.bind(null, 'sha256'), uriEscapePath: false })
  await fc.assert(fc.asyncProperty(fc.string({ minLength: 1, maxLength: 40 }), fc.string({ maxLength: 20 }), async (key, qv) => {
    const path = '/bucket/' + key.split('/').map(s => encodeURIComponent(s)).join('/')
    const req = new HttpRequest({ method: 'GET', protocol: 'http:', hostname: '127.0.0.1', port: 9000, path, query: { prefix: qv, 'list-type': '2' }, headers: { host: '127.0.0.1:9000', 'x-amz-content-sha256': EMPTY_SHA256 } })
    const signed = await signer.sign(req) as unknown as { headers: Record<string, string>, query: Record<string, string> }
    const headers: Record<string, string> = Object.fromEntries(Object.entries(signed.headers).map(([k, v]) => [k.toLowerCase(), v]))
    const rawQuery = Object.entries(signed.query).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`).join('&')
    const q = parseRawQuery(rawQuery)
    const cred = parseAuthorizationHeader(headers.authorization!, headers)
    await verifySignature('GET', path, q, headers, cred, creds.secretAccessKey)
    let refused = false
    try { await verifySignature('GET', path + 'x', q, headers, cred, creds.secretAccessKey) } catch (err) { refused = (err as S3Error).code === 'SignatureDoesNotMatch' }
    return refused
  }), { numRuns: 100 })
  t.pass('signed requests verify, changed ones do not')
})

function chunkedBody (data: Buffer, chunk: number, sign?: { key: Uint8Array, amzDate: string, scope: string, seed: string }, trailer?: [string, string]): Buffer {
  const parts: Buffer[] = []
  let prev = sign?.seed ?? ''
  const sig = (d: Buffer): string => {
    if (sign === undefined) return ''
    prev = createHmac('sha256', sign.key).update(['AWS4-HMAC-SHA256-PAYLOAD', sign.amzDate, sign.scope, prev, EMPTY_SHA256, createHash('sha256').update(d).digest('hex')].join('\n')).digest('hex')
    return `;chunk-signature=${prev}`
  }
  for (let i = 0; i < data.length; i += chunk) {
    const d = data.subarray(i, i + chunk)
    parts.push(Buffer.from(`${d.length.toString(16)}${sig(d)}\r\n`), d, Buffer.from('\r\n'))
  }
  parts.push(Buffer.from(`0${sig(Buffer.alloc(0))}\r\n`))
  if (trailer !== undefined) {
    parts.push(Buffer.from(`${trailer[0]}:${trailer[1]}\r\n`))
    if (sign !== undefined) {
      const sts = ['AWS4-HMAC-SHA256-TRAILER', sign.amzDate, sign.scope, prev, createHash('sha256').update(`${trailer[0]}:${trailer[1]}\n`).digest('hex')].join('\n')
      parts.push(Buffer.from(`x-amz-trailer-signature:${createHmac('sha256', sign.key).update(sts).digest('hex')}\r\n`))
    }
  }
  parts.push(Buffer.from('\r\n'))
  return Buffer.concat(parts)
}

t.test('aws-chunked: decodes what was encoded, split anywhere; signed chunks checked', async t => {
  const key = new Uint8Array(32).fill(7)
  const sign = { key, amzDate: '20260101T000000Z', scope: '20260101/us-east-1/s3/aws4_request', seed: 'a'.repeat(64) }
  fc.assert(fc.property(fc.uint8Array({ maxLength: 3000 }), fc.integer({ min: 1, max: 700 }), fc.integer({ min: 1, max: 500 }), fc.boolean(), (bytes, chunk, split, signed) => {
    const data = Buffer.from(bytes)
    const body = chunkedBody(data, chunk, signed ? sign : undefined, ['x-amz-checksum-crc32', 'AAAAAA=='])
    const d = new AwsChunkedDecoder({ trailers: ['x-amz-checksum-crc32'], ...(signed ? { signing: sign } : {}) })
    const out: Buffer[] = []
    for (let i = 0; i < body.length; i += split) out.push(...d.push(body.subarray(i, i + split)))
    d.end()
    return Buffer.concat(out).equals(data) && d.trailers.get('x-amz-checksum-crc32') === 'AAAAAA=='
  }), { numRuns: 300 })
  // One flipped byte in a signed body: refused.
  const body = chunkedBody(Buffer.alloc(5000, 1), 1000, sign)
  body[1500] = body[1500]! ^ 1
  const d = new AwsChunkedDecoder({ trailers: [], signing: sign })
  t.throws(() => { d.push(body); d.end() }, { code: 'SignatureDoesNotMatch' }, 'a tampered chunk fails its signature')
})

t.test('fuzz: the aws-chunked decoder throws only S3Error on garbage', async t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), fc.boolean(), (bytes, asText) => {
    const input = asText ? Buffer.from(String.fromCharCode(...bytes.map(b => [48, 49, 97, 13, 10, 59, 58, 61][b % 8]!))) : Buffer.from(bytes)
    onlyS3Errors(() => { const d = new AwsChunkedDecoder({ trailers: ['x-amz-checksum-crc32'] }); d.push(input); d.end() })
  }), { numRuns: 3000 })
  t.pass('no other error')
})

t.test('fuzz: XML body parsers throw only S3Error (MalformedXML)', async t => {
  const xmlish = fc.stringMatching(/^[<>/a-zA-Z0-9 "=&;!?-]{0,300}$/)
  fc.assert(fc.property(fc.oneof(fc.string({ maxLength: 300 }), xmlish), s => {
    onlyS3Errors(() => parseXmlBody(s))
    onlyS3Errors(() => parseCompleteBody(s))
    onlyS3Errors(() => parseDeleteBody(s))
    onlyS3Errors(() => parseCompleteBody(`<CompleteMultipartUpload>${s}</CompleteMultipartUpload>`))
  }), { numRuns: 3000 })
  t.same(parseCompleteBody('<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Part><ETag>"abc"</ETag><PartNumber>1</PartNumber></Part><Part><PartNumber>2</PartNumber><ETag>def</ETag></Part></CompleteMultipartUpload>'), [{ n: 1, etag: 'abc' }, { n: 2, etag: 'def' }])
  t.same(parseDeleteBody('<Delete><Quiet>true</Quiet><Object><Key>a &amp; b</Key></Object></Delete>'), { quiet: true, keys: ['a & b'] })
  t.throws(() => parseXmlBody('<!DOCTYPE x [<!ENTITY a "aaaa">]><Delete>&a;</Delete>'), { code: 'MalformedXML' }, 'a DOCTYPE is refused')
  t.throws(() => parseCompleteBody('<CompleteMultipartUpload><Part>'), { code: 'MalformedXML' })
})

t.test('listing: pages with a delimiter cover every key and prefix exactly once', async t => {
  fc.assert(fc.property(fc.uniqueArray(fc.stringMatching(/^[ab/]{1,6}$/), { maxLength: 40 }), fc.integer({ min: 1, max: 5 }), (keys, max) => {
    const rec = { id: `sha256:${'0'.repeat(64)}`, size: 0, etag: '0'.repeat(32), modified: 0, holders: [] } as S3ObjectRecord
    const objects = new Map(keys.map(k => [k, rec]))
    const seen: string[] = []
    let start = { after: '' } as ReturnType<typeof decodeToken>
    for (let i = 0; i < 100; i++) {
      const p = listPage(objects, { prefix: '', delimiter: '/', maxKeys: max, ...start })
      seen.push(...p.contents.map(c => c.key), ...p.commonPrefixes)
      if (!p.truncated) break
      start = decodeToken(encodeToken(p.last!))
    }
    const want = new Set(keys.map(k => k.includes('/') ? k.slice(0, k.indexOf('/') + 1) : k))
    return seen.length === want.size && seen.every(s => want.has(s))
  }), { numRuns: 500 })
  t.pass('complete and without repeats')
})

t.test('signing key: derived per scope', async t => {
  const c = { accessKey: 'A', shortDate: '20260101', region: 'us-east-1', service: 's3', amzDate: '', signedHeaders: [], signature: '', payloadHash: '' }
  t.not(Buffer.from(await signingKey(c, 'x')).toString('hex'), Buffer.from(await signingKey({ ...c, region: 'eu' }, 'x')).toString('hex'))
  t.equal(scopeOf(c), '20260101/us-east-1/s3/aws4_request')
})

t.test('XML: numeric character references decode (Go writes a quote as &#34;)', async t => {
  t.same(parseCompleteBody('<CompleteMultipartUpload><Part><ETag>&#34;abc&#34;</ETag><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>'), [{ n: 1, etag: 'abc' }])
})
