// pino logs on stderr: JSON lines, or human-readable on a terminal.
import { pino, type Logger, type LevelWithSilent } from 'pino'

export type { Logger }

export async function createLogger (level: LevelWithSilent, name = 'bolt-agent'): Promise<Logger> {
  if (process.stderr.isTTY === true && process.env.BOLT_LOG_JSON === undefined) {
    const { default: pretty } = await import('pino-pretty')
    return pino({ name, level }, pretty({ destination: 2, sync: true, colorize: true, ignore: 'pid,hostname,name' }))
  }
  return pino({ name, level }, pino.destination({ dest: 2, sync: true }))
}
