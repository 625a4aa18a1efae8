// Where `join` gets the join token, and keeping it out of the process list:
// an argument is readable by every local user in /proc/PID/cmdline, the
// environment (BOLT_TOKEN) and a file (--token-file) are not.
import { readFile } from 'node:fs/promises'
import { UserError } from './errors.js'
import { InvalidTokenError, parseToken, type JoinToken } from '../p2p/token.js'

/** The environment variable `join` reads the token from. */
export const TOKEN_ENV = 'BOLT_TOKEN'

/** The longest token file read (a token is about 150 bytes; this bounds a wrong path such as a log). */
const MAX_TOKEN_FILE_BYTES = 4096

export interface TokenSources {
  /** `--token T`: visible to local users for as long as it stays in argv. */
  flag?: string
  /** `--token-file FILE` */
  file?: string
  env?: NodeJS.ProcessEnv
}

/** The join token from `--token`, `--token-file` or BOLT_TOKEN (in that order); usage errors exit 2. */
export async function readJoinToken (src: TokenSources): Promise<JoinToken> {
  if (src.flag !== undefined && src.file !== undefined) throw new UserError('join takes --token or --token-file, not both', 2)
  let text: string
  let from: string
  if (src.flag !== undefined) {
    text = src.flag
    from = '--token'
  } else if (src.file !== undefined) {
    from = `--token-file ${src.file}`
    const buf = await readFile(src.file).catch((err: NodeJS.ErrnoException) => {
      throw new UserError(`${from}: cannot read it (${err.code ?? err.message}); write the output of \`bolt-agent token\` on a member into it`, 2)
    })
    if (buf.length > MAX_TOKEN_FILE_BYTES) throw new UserError(`${from}: ${buf.length} bytes is no token file (a token is one line from \`bolt-agent token\`)`, 2)
    text = buf.toString('utf8')
  } else {
    const v = (src.env ?? process.env)[TOKEN_ENV]
    if (v === undefined || v.trim() === '') {
      throw new UserError(`join needs the join token: ${TOKEN_ENV}=T bolt-agent join ADDR, or --token-file FILE (run \`bolt-agent token\` on a member to get it)`, 2)
    }
    text = v
    from = TOKEN_ENV
  }
  try {
    return parseToken(text)
  } catch (err) {
    if (err instanceof InvalidTokenError) throw new UserError(`${from}: ${err.message}`, 2)
    throw err
  }
}

/** `args` without `--token T` / `--token=T`, for a process started with the token in its environment instead. */
export function withoutTokenArgs (args: readonly string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string
    if (a === '--') { out.push(...args.slice(i)); break }
    if (a === '--token') { i++; continue }
    if (a.startsWith('--token=')) continue
    out.push(a)
  }
  return out
}

/**
 * Overwrites this process's command line (what /proc/PID/cmdline and ps
 * show) with one whose --token value is hidden. The token was readable
 * until now; this shortens that to the start-up.
 */
export function hideTokenArg (argv: readonly string[] = process.argv): void {
  const rest = argv.slice(2)
  const hidden = withoutTokenArgs(rest)
  if (hidden.length === rest.length) return
  process.title = ['bolt-agent', ...hidden, '--token', '<hidden>'].join(' ')
}
