// The dashboard's routes on the agent's API listener. This file is loaded
// with the agent and stays small: the login (codes and signed session
// cookies), the membership timeline and the metrics ring. The static files
// and the live stream (dashboard.ts) load on the first dashboard request,
// so an agent no one looks at pays next to nothing for the dashboard.
import type { ServerResponse } from 'node:http'
import { z } from 'zod'
import { ApiError, type ApiServer } from '../api/server.js'
import { MetricsRing } from './ring.js'
import { cookieName, Sessions } from './sessions.js'
import type { MemberEventView, UiSources } from './sources.js'
import { LOGIN_PAGE } from './login-page.js'
import { registerStackRoutes } from './stack-routes.js'
import type { Dashboard } from './dashboard.js'

/** Membership events kept for the timeline. */
export const TIMELINE_EVENTS = 200

const FileParam = z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$/)

export interface UiHandle { sessions: Sessions, ring: MetricsRing, timeline: MemberEventView[], dashboard: () => Dashboard | undefined }

export async function registerUi (api: ApiServer, src: UiSources): Promise<UiHandle> {
  const sessions = new Sessions(src.dataDir)
  await sessions.load()
  api.useSessions((req) => sessions.check(req))
  const ring = new MetricsRing(src.sample)
  ring.start(src.signal)
  const timeline: MemberEventView[] = []
  let dashboard: Dashboard | undefined
  let loading: Promise<Dashboard> | undefined
  const load = async (): Promise<Dashboard> => {
    loading ??= import('./dashboard.js').then(m => { dashboard = new m.Dashboard(src, ring, timeline); return dashboard })
    return await loading
  }
  src.onMember((e) => {
    timeline.push(e)
    if (timeline.length > TIMELINE_EVENTS) timeline.shift()
    dashboard?.member(e)
  })
  src.onApply((op) => { dashboard?.applied(op) })
  src.onPulls(() => { dashboard?.pullsChanged() })
  await src.serve?.()
  src.signal.addEventListener('abort', () => { dashboard?.close() }, { once: true })

  // `bolt-agent ui`: a one-time code, asked for with the API token.
  api.route('POST', '/v1/ui/login', async () => {
    const { code, expiresAt } = sessions.newCode()
    return { path: `/ui/login?code=${code}`, expiresAt }
  })
  api.route('GET', '/ui/login', async (req, res) => {
    const code = req.query.get('code') ?? ''
    if (!sessions.redeem(code)) { loginPage(res, 'That login link is wrong, expired or already used.'); return undefined }
    const s = sessions.newSession()
    res.writeHead(303, {
      location: '/ui/',
      'set-cookie': `${cookieName(req.raw.socket.localPort ?? 0)}=${s.value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${s.maxAgeS}`,
      'cache-control': 'no-store',
      'referrer-policy': 'no-referrer'
    })
    res.end()
    return undefined
  }, { open: true })
  api.route('GET', '/ui', async (_req, res) => { res.writeHead(308, { location: '/ui/' }); res.end(); return undefined }, { open: true })
  const page = async (file: string, req: { raw: Parameters<Sessions['check']>[0] }, res: ServerResponse): Promise<undefined> => {
    if (!sessions.check(req.raw)) { loginPage(res); return undefined }
    const parsed = FileParam.safeParse(file)
    if (!parsed.success) throw new ApiError(404, 'no such dashboard file')
    ;(await load()).serveFile(parsed.data, res)
    return undefined
  }
  api.route('GET', '/ui/', async (req, res) => await page('index.html', req, res), { open: true })
  api.route('GET', '/ui/:file', async (req, res) => await page(req.params.file ?? '', req, res), { open: true })
  // Data the pages read besides /v1: behind the token or a session (the API server checks).
  api.route('GET', '/v1/ui/events', async (req, res) => { (await load()).events(req.raw, res); return undefined })
  api.route('GET', '/v1/ui/metrics', async () => ring.data())
  api.route('GET', '/v1/ui/raft', async () => src.raft())
  api.route('GET', '/v1/ui/pulls', async () => src.pulls())
  registerStackRoutes(api)
  api.route('GET', '/v1/ui/stats/:instance', async (req) => {
    const s = await src.instanceStats(req.params.instance ?? '')
    if (s === undefined) throw new ApiError(404, `no capsule instance named ${req.params.instance ?? ''}`)
    return s
  })
  return { sessions, ring, timeline, dashboard: () => dashboard }
}

function loginPage (res: ServerResponse, why?: string): void {
  const body = LOGIN_PAGE.replace('<!--why-->', why !== undefined ? `<p class="why">${why}</p>` : '')
  res.writeHead(401, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    'x-content-type-options': 'nosniff'
  })
  res.end(body)
}
