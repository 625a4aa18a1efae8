// Errors of the registry mirror; callers match on `err.name`.
export class MirrorBindRefusedError extends Error {
  override name = 'MirrorBindRefusedError'
}

export class MirrorRequestError extends Error {
  override name = 'MirrorRequestError'
  /** `code` is a distribution-spec error code (BLOB_UNKNOWN, NAME_INVALID, …). */
  constructor (readonly status: number, readonly code: string, message: string) { super(message) }
}

/** Bytes sent to a client were not covered by the blob's digest check: the response was aborted. */
export class MirrorVerifyError extends Error {
  override name = 'MirrorVerifyError'
}
