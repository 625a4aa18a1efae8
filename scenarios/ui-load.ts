// ui-load: the dashboard with 32 real members and 200 capsules in the state
// (pending: their selector matches no node, so nothing runs). Figures:
// headless chromium's time from navigation to the capsule table rendered
// (goal <= 1 s), the p50 latency of the API calls the pages make (goal
// <= 10 ms), the bundle's gzipped size, and the agent's RSS before the
// first dashboard request and after the pages were served.
import { readFile, readdir } from 'node:fs/promises'
import { request, Agent as HttpAgent } from 'node:http'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { Cluster, waitFor } from '../test/helpers/harness.js'
import { aliveCount, formInBatches, rssBytes } from './_membership.js'
import { percentile, repoRoot, type Scenario } from './report.js'

const CHROMIUM = '/usr/bin/chromium'
/** The calls the dashboard's pages make besides its stream. */
const PAGE_CALLS = ['/v1/status', '/v1/capsules', '/v1/capsules/c-0', '/v1/ui/metrics', '/v1/ui/raft', '/v1/images', '/v1/mirror', '/v1/kv?prefix=objects/']

async function get (agent: HttpAgent, url: string, headers: Record<string, string>): Promise<{ status: number, headers: Record<string, unknown>, ms: number }> {
  const start = performance.now()
  return await new Promise((resolve, reject) => {
    const req = request(url, { agent, headers }, res => { res.resume(); res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, ms: performance.now() - start }) }) })
    req.on('error', reject)
    req.end()
  })
}

async function bundleGzBytes (): Promise<number> {
  const dir = join(repoRoot(), 'dist', 'ui-web')
  let n = 0
  for (const f of await readdir(dir)) n += gzipSync(await readFile(join(dir, f))).length
  return n
}

export const scenario: Scenario = {
  name: 'ui-load',
  description: 'dashboard with 32 members and 200 capsules: navigation to capsule table rendered, p50 API latency',
  async run ({ quick }) {
    const nMembers = quick ? 8 : 32
    const nCapsules = quick ? 50 : 200
    const cluster = await Cluster.create('')
    try {
      const agents = await formInBatches(cluster, nMembers)
      const a0 = agents[0]!
      const all = await waitFor(async () => await aliveCount(a0) === nMembers, 180_000, 1000)
      if (all < 0) throw new Error(`not all ${nMembers} members alive`)
      const api = JSON.parse(await readFile(join(a0.dataDir, 'api.json'), 'utf8')) as { url: string, token: string }
      const auth = { authorization: `Bearer ${api.token}`, 'content-type': 'application/json' }
      for (let i = 0; i < nCapsules; i++) {
        const res = await fetch(`${api.url}/v1/capsules`, { method: 'POST', headers: auth, body: JSON.stringify({ name: `c-${i}`, image: 'bolt.local/busybox:demo', args: ['sleep', '600'], network: 'none', on: { zone: 'nowhere' }, labels: { app: `app-${i % 10}` } }) })
        if (!res.ok) throw new Error(`capsule c-${i}: ${res.status} ${await res.text()}`)
      }
      const pid = a0.proc!.pid!
      const rssBefore = await rssBytes(pid)

      const link = JSON.parse((await a0.cli(['ui', '--json'])).stdout) as { url: string }
      const { default: puppeteer } = await import('puppeteer-core')
      const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
      const renderMs: number[] = []
      let cookie = ''
      try {
        const page = await browser.newPage()
        await page.setViewport({ width: 1280, height: 800 })
        page.setDefaultNavigationTimeout(120_000)
        await page.goto(link.url, { waitUntil: 'domcontentloaded' })
        const c = (await page.cookies()).find(x => x.name.startsWith('bolt_ui_'))
        cookie = c !== undefined ? `${c.name}=${c.value}` : ''
        for (let i = 0; i < (quick ? 3 : 7); i++) {
          await page.goto('about:blank')
          await page.goto(`${api.url}/ui/#/capsules`, { waitUntil: 'domcontentloaded' })
          // performance.now() in the page counts from its navigation's start.
          const ms = await page.waitForFunction((n: number) => {
            // eslint-disable-next-line @typescript-eslint/no-explicit-any
            const d = (globalThis as any).document
            return d.querySelectorAll('[data-testid=capsule-table] tbody tr[data-capsule]').length >= n ? performance.now() : false
          }, { timeout: 120_000, polling: 'raf' }, nCapsules).then(async h => await h.jsonValue() as number)
          renderMs.push(ms)
        }
      } finally {
        await browser.close()
      }
      const rssAfter = await rssBytes(pid)

      const keepAlive = new HttpAgent({ keepAlive: true, maxSockets: 1 })
      const lat: number[] = []
      for (let round = 0; round < (quick ? 10 : 30); round++) {
        for (const p of PAGE_CALLS) {
          const r = await get(keepAlive, `${api.url}${p}`, { cookie })
          if (r.status !== 200) throw new Error(`${p}: HTTP ${r.status}`)
          lat.push(r.ms)
        }
      }
      keepAlive.destroy()
      const renderP50 = percentile(renderMs, 50)
      const apiP50 = percentile(lat, 50)
      return {
        name: 'ui-load',
        figures: {
          members: nMembers,
          capsules: nCapsules,
          capsuleTableRenderedMsP50: renderP50,
          capsuleTableRenderedMsMax: Math.max(...renderMs),
          apiP50Ms: apiP50,
          apiP95Ms: percentile(lat, 95),
          bundleKBgz: (await bundleGzBytes()) / 1024,
          rssBeforeUiMB: rssBefore / 1048576,
          rssAfterUiMB: rssAfter / 1048576
        },
        goal: 'capsuleTableRenderedMsP50 <= 1000 and apiP50Ms <= 10 (bundle <= 150 KB gzipped)',
        met: renderP50 <= 1000 && apiP50 <= 10,
        config: { viewport: '1280x800', calls: PAGE_CALLS, browser: CHROMIUM }
      }
    } finally {
      await cluster.destroy()
    }
  }
}
