// `bolt-agent ui [--open]`: a one-time login link to this agent's dashboard.
// A client command: it loads nothing heavy (no zod, pino or libp2p).
import type { Command } from 'commander'
import { ApiClient, findApi } from '../api/client.js'
import { clientDataDir, out, type GlobalOpts } from '../cli-common.js'

export function registerUiCommand (program: Command): void {
  program.command('ui').description('print a one-time login link to this agent\'s web dashboard')
    .option('--open', 'open the link in the system browser, where there is one')
    .action(async (o: { open?: boolean }) => {
      const g = program.opts<GlobalOpts>()
      const api = await findApi(await clientDataDir(g), { ...(g.api !== undefined ? { url: g.api } : {}), ...(g.apiToken !== undefined ? { token: g.apiToken } : {}) })
      const r = await new ApiClient(api).request<{ path: string, expiresAt: number }>('POST', '/v1/ui/login')
      const url = new URL(r.path, api.url).toString()
      const dashboard = new URL('/ui/', api.url).toString()
      const opened = o.open === true ? await openBrowser(url) : undefined
      if (g.json === true) { out(JSON.stringify({ url, dashboard, expiresAt: new Date(r.expiresAt).toISOString(), ...(opened !== undefined ? { opened: opened === true } : {}) })); return }
      out(url)
      out(`(one-time login link to ${dashboard}, valid for two minutes)`)
      if (typeof opened === 'string') out(`could not open a browser: ${opened}; open the link yourself`)
    })
}

/** Starts the desktop's opener on `url`: true, or why not. */
async function openBrowser (url: string): Promise<true | string> {
  const { spawn } = await import('node:child_process')
  const cmd = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open'
  return await new Promise(resolve => {
    const p = spawn(cmd, [url], { stdio: 'ignore', detached: true })
    p.once('error', (err) => { resolve(`${cmd}: ${err.message}`) })
    p.once('spawn', () => { p.unref(); resolve(true) })
  })
}
