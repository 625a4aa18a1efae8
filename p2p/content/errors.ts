// Typed errors of the content part (blob store, registry client, piece
// exchange, image puller, objects). Callers match on `err.name`.

export class InvalidDigestError extends Error {
  override name = 'InvalidDigestError'
}

export class DigestMismatchError extends Error {
  override name = 'DigestMismatchError'
}

export class BlobNotFoundError extends Error {
  override name = 'BlobNotFoundError'
}

export class QuotaExceededError extends Error {
  override name = 'QuotaExceededError'
}

/** A peer asked for a complete blob cut at a piece size this node does not serve. */
export class UnsupportedPieceSizeError extends Error {
  override name = 'UnsupportedPieceSizeError'
}

export class SizeMismatchError extends Error {
  override name = 'SizeMismatchError'
}

export class InvalidReferenceError extends Error {
  override name = 'InvalidReferenceError'
}

export class RegistryError extends Error {
  override name = 'RegistryError'
  constructor (message: string, readonly status?: number, options?: ErrorOptions) {
    super(message, options)
  }
}

export class RegistryAuthError extends Error {
  override name = 'RegistryAuthError'
}

export class InsecureRegistryError extends Error {
  override name = 'InsecureRegistryError'
}

export class ManifestError extends Error {
  override name = 'ManifestError'
}

export class PlatformNotFoundError extends Error {
  override name = 'PlatformNotFoundError'
}

export class FrameTooLargeError extends Error {
  override name = 'FrameTooLargeError'
}

export class InvalidMessageError extends Error {
  override name = 'InvalidMessageError'
}

export class PullFailedError extends Error {
  override name = 'PullFailedError'
}

export class PullAbortedError extends Error {
  override name = 'PullAbortedError'
}

export class ObjectNotFoundError extends Error {
  override name = 'ObjectNotFoundError'
}

export class ImageNotFoundError extends Error {
  override name = 'ImageNotFoundError'
}

/** A registry response body stopped delivering bytes (retried). */
export class BodyStalledError extends Error {
  override name = 'BodyStalledError'
}

/** A URL the registry client was about to fetch (a redirect, a token realm) was refused by its guard. */
export class UpstreamAddressRefusedError extends Error {
  override name = 'UpstreamAddressRefusedError'
}
