// The local API as a component: the HTTP listener with its bearer token, the
// routes each part registers, and the files that let clients find it
// (DATA/api.json, and the runtime dir's list of local agents).
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { API_FILE } from './api/client.js'
import { ApiServer } from './api/server.js'
import { writeAtomic } from './cluster-file.js'
import type { Config } from './config.js'
import { UserError } from './errors.js'
import { registerLocalAgent, unregisterLocalAgent } from './local-agents.js'
import type { Logger } from './logger.js'

/** A part that serves routes on the local API. */
export type RouteRegistrar = (api: ApiServer) => void | Promise<void>

export interface ApiHostInit {
  dataDir: string
  config: Config['api']
  log: Logger
}

export class ApiHost {
  private server: ApiServer | undefined
  /** Whether this agent wrote DATA/api.json: only then may stop() remove it (a refused second agent must not). */
  private wroteApiFile = false
  url = ''

  constructor (private readonly o: ApiHostInit) {}

  async start (registrars: RouteRegistrar[]): Promise<void> {
    const { config, dataDir, log } = this.o
    const token = randomBytes(24).toString('hex')
    const api = new ApiServer(token, { allowRemote: config.allow_remote, allowedHosts: config.allowed_hosts })
    this.server = api
    for (const register of registrars) await register(api)
    try {
      this.url = await api.listen(config.listen)
    } catch (err) {
      throw new UserError(`cannot serve the API on ${config.listen}: ${(err as Error).message} (use --api HOST:PORT)`)
    }
    await writeAtomic(join(dataDir, API_FILE), JSON.stringify({ url: this.url, token, pid: process.pid }) + '\n')
    this.wroteApiFile = true
    // So client commands find this agent without --data; without it they still work with --data.
    await registerLocalAgent({ pid: process.pid, dataDir: resolve(dataDir), url: this.url })
      .catch((err: Error) => { log.warn(`clients will need --data ${dataDir}: ${err.message}`) })
  }

  async stop (): Promise<void> {
    const { dataDir, log } = this.o
    await this.server?.close().catch((err: Error) => { log.warn({ err: err.message }, 'cannot close the API listener') })
    // Only the file this agent wrote: an agent refused at start (another one
    // runs on this data dir) must leave that one's api.json in place.
    if (!this.wroteApiFile) return
    await rm(join(dataDir, API_FILE), { force: true }).catch((err: Error) => { log.warn({ err }, 'cannot remove api.json') })
    await unregisterLocalAgent(process.pid).catch((err: Error) => { log.warn(`cannot remove this agent from the runtime dir: ${err.message}`) })
  }
}
