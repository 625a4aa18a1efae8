// Errors of admission: a refusal the other side answered with, a peer that
// proved the join secret but not the pinned key, and a peer not admitted.

export class AdmissionRejectedError extends Error {
  override name = 'AdmissionRejectedError'
  constructor (readonly reason: string, message: string) { super(message) }
}
export class ImpostorError extends Error {
  override name = 'ImpostorError'
}
export class NotAdmittedError extends Error {
  override name = 'NotAdmittedError'
}

/** The error for a `reject` the other side sent, by its reason. */
export function rejection (reason: string): Error {
  switch (reason) {
    case 'token': return new AdmissionRejectedError(reason, 'rejected the token')
    case 'cluster': return new AdmissionRejectedError(reason, 'belongs to another cluster (the token names a different cluster id)')
    case 'revoked': return new AdmissionRejectedError(reason, 'has evicted this node from the cluster (an operator must give it a new token)')
    case 'rate': return new AdmissionRejectedError(reason, 'is refusing admission attempts for now (too many tries; wait and retry)')
    case 'stale': return new AdmissionRejectedError(reason, 'holds a newer cluster key than this node can prove (a member was evicted since; join again with a new token from `bolt-agent token`)')
    default: return new AdmissionRejectedError(reason, 'broke off the admission exchange')
  }
}
