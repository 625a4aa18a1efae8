// S3's errors: a code clients match on (NoSuchKey, SignatureDoesNotMatch…),
// the HTTP status S3 gives it, and a message for people. The endpoint
// renders them as S3's XML <Error> document (see xml.ts).

export class S3Error extends Error {
  override name = 'S3Error'
  constructor (readonly status: number, readonly code: string, message: string, readonly extra: Record<string, string> = {}) {
    super(message)
  }
}

export const s3err = {
  accessDenied: (m = 'Access Denied') => new S3Error(403, 'AccessDenied', m),
  badDigest: (m = 'The Content-MD5 you specified did not match what we received.') => new S3Error(400, 'BadDigest', m),
  bucketExists: (b: string) => new S3Error(409, 'BucketAlreadyOwnedByYou', `bucket ${b} already exists`),
  bucketNotEmpty: (b: string) => new S3Error(409, 'BucketNotEmpty', `bucket ${b} is not empty`),
  entityTooLarge: (max: number) => new S3Error(400, 'EntityTooLarge', `Your proposed upload exceeds the maximum allowed size of ${max} bytes`),
  entityTooSmall: (n: number) => new S3Error(400, 'EntityTooSmall', `part ${n} is smaller than the minimum of 5 MiB and is not the last part`),
  internal: (m: string) => new S3Error(500, 'InternalError', m),
  invalidAccessKey: () => new S3Error(403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.'),
  invalidArgument: (m: string) => new S3Error(400, 'InvalidArgument', m),
  invalidBucketName: (b: string) => new S3Error(400, 'InvalidBucketName', `The specified bucket is not valid: ${b.slice(0, 80)}`),
  invalidDigest: (m = 'The Content-MD5 you specified is not valid.') => new S3Error(400, 'InvalidDigest', m),
  invalidPart: (m: string) => new S3Error(400, 'InvalidPart', m),
  invalidPartOrder: () => new S3Error(400, 'InvalidPartOrder', 'The list of parts was not in ascending order.'),
  invalidRange: (size: number) => new S3Error(416, 'InvalidRange', 'The requested range is not satisfiable', { ActualObjectSize: String(size) }),
  invalidRequest: (m: string) => new S3Error(400, 'InvalidRequest', m),
  keyTooLong: () => new S3Error(400, 'KeyTooLongError', 'Your key is too long (at most 1024 bytes)'),
  malformedXml: (m = 'The XML you provided was not well-formed or did not validate against our published schema.') => new S3Error(400, 'MalformedXML', m),
  methodNotAllowed: () => new S3Error(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.'),
  noSuchBucket: (b: string) => new S3Error(404, 'NoSuchBucket', 'The specified bucket does not exist', { BucketName: b }),
  noSuchKey: (k: string) => new S3Error(404, 'NoSuchKey', 'The specified key does not exist.', { Key: k }),
  noSuchUpload: () => new S3Error(404, 'NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.'),
  notImplemented: (what: string) => new S3Error(501, 'NotImplemented', `${what} is not implemented by this endpoint`),
  signatureMismatch: () => new S3Error(403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.'),
  skewed: () => new S3Error(403, 'RequestTimeTooSkewed', 'The difference between the request time and the current time is too large (over 15 minutes).'),
  expired: () => new S3Error(403, 'AccessDenied', 'Request has expired'),
  xAmzContentSha256Mismatch: () => new S3Error(400, 'XAmzContentSHA256Mismatch', 'The provided \'x-amz-content-sha256\' header does not match what was computed.'),
  badChecksum: (alg: string) => new S3Error(400, 'BadDigest', `The ${alg} you specified did not match the calculated checksum.`),
  incompleteBody: () => new S3Error(400, 'IncompleteBody', 'You did not provide the number of bytes specified by the Content-Length HTTP header.'),
  authorizationMalformed: (m: string) => new S3Error(400, 'AuthorizationHeaderMalformed', m)
}

/** A failed Raft command's reason (S3_REASONS) as the S3 error it stands for. */
export function reasonError (reason: string, bucket: string, key = ''): S3Error {
  switch (reason) {
    case 'NoSuchBucket': return s3err.noSuchBucket(bucket)
    case 'BucketAlreadyOwnedByYou': return s3err.bucketExists(bucket)
    case 'BucketNotEmpty': return s3err.bucketNotEmpty(bucket)
    case 'NoSuchUpload': return s3err.noSuchUpload()
    case 'NoSuchKey': return s3err.noSuchKey(key)
    default: return s3err.internal(`the cluster refused the change: ${reason}`)
  }
}
