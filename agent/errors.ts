// Errors that reach a person through the CLI: each says what happened and
// what to do, in one line.
export class UserError extends Error {
  override name = 'UserError'
  constructor (message: string, readonly exitCode = 1) { super(message) }
}
export class JoinFailedError extends UserError {
  override name = 'JoinFailedError'
}
export class DataDirError extends UserError {
  override name = 'DataDirError'
}
/** `evict` named no member, or an ambiguous or forbidden one (the API's 404). */
export class UnknownMemberError extends Error {
  override name = 'UnknownMemberError'
}
