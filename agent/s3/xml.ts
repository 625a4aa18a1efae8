// S3's XML, both ways, through fast-xml-parser: response documents are
// built from plain objects (escaping is the builder's), request bodies
// (CompleteMultipartUpload, Delete, CreateBucketConfiguration) are size
// bounded, validated as XML, parsed, then checked by zod. A DOCTYPE is
// refused outright: no entity of a client's is ever expanded.
import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser'
import { z } from 'zod'
import { S3Error, s3err } from './errors.js'
import { MAX_PARTS } from './s3-state.js'

export const S3_XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/'
/** Largest XML request body: 10,000 parts or 1,000 keys of 1 KiB with their markup. */
export const MAX_XML_BODY_BYTES = 2 * 1024 * 1024
/** Keys one DeleteObjects may name (S3's limit). */
export const MAX_DELETE_KEYS = 1000

const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', suppressEmptyNode: false })

/** `{ Root: {...} }` as an XML document with S3's namespace on the root. */
export function xmlDocument (root: string, body: Record<string, unknown>): string {
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + (builder.build({ [root]: { '@_xmlns': S3_XMLNS, ...body } }) as string)
}

export function errorDocument (err: S3Error, resource: string, requestId: string): string {
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + (builder.build({ Error: { Code: err.code, Message: err.message, ...err.extra, Resource: resource, RequestId: requestId } }) as string)
}

const parser = new XMLParser({
  ignoreAttributes: true,
  removeNSPrefix: true,
  parseTagValue: false,
  trimValues: false,
  processEntities: true,
  // Go's encoder (rclone) writes a quote as &#34;: numeric references must decode.
  htmlEntities: true,
  ignoreDeclaration: true,
  isArray: (name) => name === 'Part' || name === 'Object'
})

/** Parses an XML request body; throws MalformedXML on anything not well-formed or with a DOCTYPE. */
export function parseXmlBody (text: string): Record<string, unknown> {
  if (Buffer.byteLength(text) > MAX_XML_BODY_BYTES) throw s3err.malformedXml('the XML body is too large')
  if (/<!DOCTYPE|<!ENTITY/i.test(text)) throw s3err.malformedXml('DOCTYPE and ENTITY declarations are not accepted')
  if (XMLValidator.validate(text) !== true) throw s3err.malformedXml()
  try {
    const v: unknown = parser.parse(text)
    if (typeof v !== 'object' || v === null) throw s3err.malformedXml()
    return v as Record<string, unknown>
  } catch (err) {
    if (err instanceof S3Error) throw err
    throw s3err.malformedXml()
  }
}

const Text = z.string()
const CompleteSchema = z.object({
  CompleteMultipartUpload: z.object({
    Part: z.array(z.object({
      PartNumber: Text.regex(/^\d{1,5}$/),
      ETag: Text.max(80)
    }).loose()).min(1).max(MAX_PARTS)
  }).loose()
})

/** CompleteMultipartUpload's parts, in the order given: part number and ETag (quotes removed). */
export function parseCompleteBody (text: string): Array<{ n: number, etag: string }> {
  const r = CompleteSchema.safeParse(parseXmlBody(text))
  if (!r.success) throw s3err.malformedXml()
  return r.data.CompleteMultipartUpload.Part.map(p => ({ n: Number(p.PartNumber), etag: p.ETag.trim().replace(/^"|"$/g, '') }))
}

const DeleteSchema = z.object({
  Delete: z.object({
    Quiet: Text.optional(),
    Object: z.array(z.object({ Key: Text.min(1) }).loose()).min(1).max(MAX_DELETE_KEYS)
  }).loose()
})

/** DeleteObjects: the keys and whether the answer lists only errors. */
export function parseDeleteBody (text: string): { quiet: boolean, keys: string[] } {
  const r = DeleteSchema.safeParse(parseXmlBody(text))
  if (!r.success) throw s3err.malformedXml()
  return { quiet: r.data.Delete.Quiet?.trim().toLowerCase() === 'true', keys: r.data.Delete.Object.map(o => o.Key) }
}

/** CreateBucket's optional body: only checked to be the right document. */
export function parseCreateBucketBody (text: string): void {
  if (text.trim() === '') return
  const v = parseXmlBody(text)
  if (!('CreateBucketConfiguration' in v)) throw s3err.malformedXml()
}
