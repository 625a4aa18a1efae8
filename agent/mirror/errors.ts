// Errors of the registry mirror; callers match on `err.name`.
export class MirrorBindRefusedError extends Error {
  override name = 'MirrorBindRefusedError'
}

export class MirrorRequestError extends Error {
  override name = 'MirrorRequestError'
  /** `code` is a distribution-spec error code (BLOB_UNKNOWN, NAME_INVALID, …). */
  constructor (readonly status: number, readonly code: string, message: string) { super(message) }
}

/** The bytes assembled for a client did not hash to the digest asked for: the response was aborted. */
export class MirrorVerifyError extends Error {
  override name = 'MirrorVerifyError'
}
