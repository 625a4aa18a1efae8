// Capsule logs: stdout and stderr split into lines and appended as JSON lines
// ({t, s, l}) to one file that rotates by size, keeping a bounded number of
// old files; and a reader that replays them and can follow new lines.
import { EventEmitter, once } from 'node:events'
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises'

/** A longer line is cut into records of this size (Docker does the same at 16 KiB). */
export const MAX_LINE_BYTES = 16 * 1024
export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
export const DEFAULT_LOG_MAX_FILES = 3

export type LogStream = 'stdout' | 'stderr'

export interface LogRecord {
  /** Milliseconds since the epoch when the line was read. */
  time: number
  stream: LogStream
  line: string
}

export interface RotationOptions {
  maxBytes: number
  /** Files kept in all, the live one included. */
  maxFiles: number
}

/** Appends records to `path`, rotating to path.1 … path.(maxFiles-1) when it exceeds maxBytes. */
export class RotatingLogWriter extends EventEmitter {
  private fh: FileHandle | undefined
  private size = 0
  private chain: Promise<void> = Promise.resolve()
  private readonly partial: Record<LogStream, string> = { stdout: '', stderr: '' }
  private closed = false
  /** Set once everything queued is on disk and the file is closed. */
  private ended = false
  /** Bumped on every rotation; readers compare it to notice one. */
  generation = 0
  /** Bumped on every append, so a reader can tell it missed one while reading. */
  appends = 0

  constructor (readonly path: string, private readonly opts: RotationOptions) {
    super()
    this.setMaxListeners(64)
  }

  async open (): Promise<void> {
    this.fh = await open(this.path, 'a', 0o640)
    this.size = (await this.fh.stat()).size
  }

  /** Feeds raw output of one stream; complete lines become records. */
  feed (stream: LogStream, chunk: string): void {
    if (this.closed) return
    let buf = this.partial[stream] + chunk
    const records: LogRecord[] = []
    const now = Date.now()
    for (;;) {
      const nl = buf.indexOf('\n')
      if (nl < 0) break
      this.pushLine(records, stream, buf.slice(0, nl), now)
      buf = buf.slice(nl + 1)
    }
    while (Buffer.byteLength(buf) > MAX_LINE_BYTES) {
      this.pushLine(records, stream, buf.slice(0, MAX_LINE_BYTES), now)
      buf = buf.slice(MAX_LINE_BYTES)
    }
    this.partial[stream] = buf
    if (records.length > 0) this.enqueue(records)
  }

  private pushLine (out: LogRecord[], stream: LogStream, text: string, now: number): void {
    let rest = text
    do {
      out.push({ time: now, stream, line: rest.slice(0, MAX_LINE_BYTES) })
      rest = rest.slice(MAX_LINE_BYTES)
    } while (rest.length > 0)
  }

  private enqueue (records: LogRecord[]): void {
    const lines = records.map(r => Buffer.from(JSON.stringify({ t: r.time, s: r.stream, l: r.line }) + '\n'))
    this.chain = this.chain.then(async () => { await this.append(lines) }).catch(err => { this.emit('error', err) })
  }

  /** Writes the lines in as few writes as the size limit allows, rotating between them. */
  private async append (lines: Buffer[]): Promise<void> {
    let batch: Buffer[] = []
    let batchBytes = 0
    const flush = async (): Promise<void> => {
      if (batch.length === 0 || this.fh === undefined) return
      await this.fh.write(Buffer.concat(batch))
      this.size += batchBytes
      batch = []
      batchBytes = 0
    }
    for (const line of lines) {
      if (this.size + batchBytes > 0 && this.size + batchBytes + line.length > this.opts.maxBytes) {
        await flush()
        await this.rotate()
      }
      batch.push(line)
      batchBytes += line.length
    }
    await flush()
    this.appends++
    this.emit('append')
  }

  private async rotate (): Promise<void> {
    await this.fh?.close()
    const keep = this.opts.maxFiles - 1
    await rm(`${this.path}.${keep}`, { force: true })
    for (let i = keep - 1; i >= 1; i--) await rename(`${this.path}.${i}`, `${this.path}.${i + 1}`).catch(ifMissing(undefined))
    if (keep >= 1) await rename(this.path, `${this.path}.1`)
    else await rm(this.path, { force: true })
    this.fh = await open(this.path, 'a', 0o640)
    this.size = 0
    this.generation++
    this.emit('rotate')
  }

  /** Flushes partial lines and closes the file; readers following it then end. */
  async close (): Promise<void> {
    if (this.closed) return
    for (const s of ['stdout', 'stderr'] as const) {
      if (this.partial[s] !== '') { const rest = this.partial[s]; this.partial[s] = ''; this.enqueue([{ time: Date.now(), stream: s, line: rest }]) }
    }
    this.closed = true
    await this.chain
    await this.fh?.close()
    this.fh = undefined
    this.ended = true
    this.emit('close')
  }

  get isClosed (): boolean {
    return this.ended
  }
}

/** A rejection handler: `value` when the file is not there (not rotated that far yet, or renamed meanwhile); any other failure is thrown. */
function ifMissing<T> (value: T): (err: NodeJS.ErrnoException) => T {
  return err => { if (err.code === 'ENOENT') return value; throw err }
}

function parseRecord (line: string): LogRecord | undefined {
  try {
    const o = JSON.parse(line) as { t: number, s: LogStream, l: string }
    return { time: o.t, stream: o.s, line: o.l }
  } catch {
    return undefined // a line cut by a crash mid-write: skipped, the others still read
  }
}

const READ_CHUNK = 64 * 1024

async function * readFileRecords (fh: FileHandle, start: number, state: { pos: number, rest: string }): AsyncGenerator<LogRecord> {
  state.pos = start
  const buf = Buffer.alloc(READ_CHUNK)
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, READ_CHUNK, state.pos)
    if (bytesRead === 0) return
    state.pos += bytesRead
    const text = state.rest + buf.subarray(0, bytesRead).toString('utf8')
    const lines = text.split('\n')
    state.rest = lines.pop() ?? ''
    for (const l of lines) {
      const r = parseRecord(l)
      if (r !== undefined) yield r
    }
  }
}

export interface ReadLogsOptions {
  maxFiles: number
  /** Keep waiting for new records until the writer closes or `signal` aborts. */
  follow?: boolean
  signal?: AbortSignal
  /** The live writer, when the capsule still runs in this process. */
  writer?: RotatingLogWriter
  /** Only the last `tail` records written so far (then, with `follow`, every new one). */
  tail?: number
  /** Only records read at or after this time (ms since the epoch). */
  since?: number
}

/** The most records `tail` may keep: they stay in memory until the reader has caught up. */
export const MAX_TAIL = 100_000

/** Marks the moment the reader has replayed everything written so far. */
const CAUGHT_UP = Symbol('caught up')

/**
 * Replays the rotated files oldest first, then the live one; with `follow`,
 * tails it. `since` filters by time; `tail` keeps the last N of what was
 * written before the reader caught up (a bounded ring), new lines all.
 */
export async function * readLogs (path: string, opts: ReadLogsOptions): AsyncGenerator<LogRecord> {
  const { tail, since } = opts
  let ring: LogRecord[] | undefined = tail !== undefined ? [] : undefined
  for await (const r of replayLogs(path, opts)) {
    if (r === CAUGHT_UP) {
      if (ring !== undefined) { yield * ring; ring = undefined }
      continue
    }
    if (since !== undefined && r.time < since) continue
    if (ring === undefined) { yield r; continue }
    ring.push(r)
    if (ring.length > Math.min(tail as number, MAX_TAIL)) ring.shift()
  }
  if (ring !== undefined) yield * ring
}

async function * replayLogs (path: string, opts: ReadLogsOptions): AsyncGenerator<LogRecord | typeof CAUGHT_UP> {
  for (let i = opts.maxFiles - 1; i >= 1; i--) {
    const fh = await open(`${path}.${i}`, 'r').catch(ifMissing(undefined))
    if (fh === undefined) continue
    try {
      yield * readFileRecords(fh, 0, { pos: 0, rest: '' })
    } finally {
      await fh.close()
    }
  }
  const writer = opts.follow === true ? opts.writer : undefined
  let fh = await open(path, 'r').catch(ifMissing(undefined))
  if (fh === undefined) return
  let generation = writer?.generation ?? 0
  const state = { pos: 0, rest: '' }
  try {
    for (;;) {
      const seen = writer?.appends ?? 0
      yield * readFileRecords(fh, state.pos, state)
      if (writer === undefined || opts.signal?.aborted === true) return
      if (writer.generation !== generation) {
        // The writer bumps its counter after renaming and reopening, so a file
        // opened in between may already be the new live one: then nothing of
        // ours rotated, and reopening it would repeat its lines.
        const live = await stat(path).catch(() => undefined)
        if (live !== undefined && live.ino === (await fh.stat()).ino) {
          generation = writer.generation
          continue
        }
        // The file we hold was rotated away and is finished. Lines appended
        // between our last read and the rotation are still in it: read them.
        // Then read the files rotated after it, found by inode (names shift
        // under us while rotations go on), and go on with the live one.
        yield * readFileRecords(fh, state.pos, state)
        generation = writer.generation
        const done: number = (await fh.stat()).ino
        await fh.close()
        const next: FileHandle | undefined = yield * readRotatedAfter(path, opts.maxFiles, done)
        if (next === undefined) return
        fh = next
        state.pos = 0
        state.rest = ''
        continue
      }
      if (writer.isClosed) {
        // Re-check the size once: the last append may have landed after our read.
        if ((await stat(path).catch(() => ({ size: 0 }))).size > state.pos) continue
        return
      }
      if (writer.appends !== seen) continue
      yield CAUGHT_UP
      const ac = new AbortController()
      const waits = [once(writer, 'append', { signal: ac.signal }), once(writer, 'rotate', { signal: ac.signal }), once(writer, 'close', { signal: ac.signal })]
      if (opts.signal !== undefined) waits.push(once(opts.signal, 'abort', { signal: ac.signal }))
      try {
        await Promise.race(waits)
      } finally {
        ac.abort()
        await Promise.allSettled(waits)
      }
    }
  } finally {
    await fh.close()
  }
}

/**
 * Reads, oldest first, every rotated file newer than the one with inode
 * `after`, and opens the live file. A file is opened by name and kept only if
 * it is still the file seen when the names were listed; otherwise a rotation
 * moved the names, and the listing is taken again. Undefined when the live
 * file does not come back (the writer went away mid-rotation).
 */
async function * readRotatedAfter (path: string, maxFiles: number, after: number): AsyncGenerator<LogRecord, FileHandle | undefined> {
  const names = [...Array.from({ length: maxFiles - 1 }, (_, j) => `${path}.${maxFiles - 1 - j}`), path]
  let last = after
  for (let tries = 0; tries < 1000; tries++) {
    const inos = await Promise.all(names.map(async n => await stat(n).then(st => st.ino, () => undefined))) // a name not there (yet): skipped below
    for (let i = inos.indexOf(last) + 1; i < names.length; i++) {
      if (inos[i] === undefined) continue
      const fh = await open(names[i]!, 'r').catch(ifMissing(undefined))
      if (fh === undefined || (await fh.stat()).ino !== inos[i]) { await fh?.close(); break }
      if (i === names.length - 1) return fh
      try {
        yield * readFileRecords(fh, 0, { pos: 0, rest: '' })
      } finally {
        await fh.close()
      }
      last = inos[i]!
    }
    // The live file is between its rename and its new file, or names moved: look again.
    await new Promise(resolve => setImmediate(resolve))
  }
  return undefined
}
