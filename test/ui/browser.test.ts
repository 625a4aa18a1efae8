// The dashboard in a real browser (Debian's chromium, headless, driven by
// puppeteer-core) against a real 3-agent cluster: log in through the link,
// see the members live, a kill -9 shown dead without a reload, a capsule run
// from the form with its logs arriving and its CPU and memory read on the
// node that runs it, stopped; an image pulled from a peer shown with its
// bytes from peers, and a capsule start's pull in progress; user text shown
// as text and no script run; the page reconnects when its agent restarts.
import t from 'tap'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { createServer } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Cluster, seedAddr, untilStopped } from '../helpers/harness.js'
import { RAFT_TOML } from '../../scenarios/_raft.js'
import { busyboxPath } from '../../agent/demo-image.js'
import { buildImage, pushImage, startCountingProxy, startRegistry, REGISTRY_BIN } from '../helpers/registry.js'

// Page-side code below runs in the browser; this file is compiled without the DOM lib.
declare const document: any, window: any, location: any, localStorage: any, sessionStorage: any // eslint-disable-line @typescript-eslint/no-explicit-any

const CHROMIUM = '/usr/bin/chromium'
const START_MS = 120_000
const XSS = '<img src=x onerror=alert(1)>'
/** dist/test/ui → scenarios/reports at the repo root. */
const REPORTS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'scenarios', 'reports')
const haveRunc = existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc')
const isRoot = process.getuid?.() === 0

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)) })
  })
}

const skip = !existsSync(CHROMIUM) ? 'needs chromium (.ci/run installs it)' : !haveRunc || !isRoot || busyboxPath() === undefined ? 'needs root, runc and busybox-static' : false

t.test('the dashboard in chromium against a 3-agent cluster', { skip, timeout: 600_000 }, async t => {
  const { default: puppeteer } = await import('puppeteer-core')
  await mkdir(REPORTS, { recursive: true })
  const port = await freePort()
  const cluster = await Cluster.create(RAFT_TOML(3))
  t.teardown(async () => { await cluster.destroy() })
  const a0 = await cluster.add('a0', `[api]\nlisten = "127.0.0.1:${port}"\n[labels]\nnote = "${XSS}"\nhome = "yes"\n`)
  await a0.start(['init'], START_MS)
  const seed = seedAddr(a0, 'quic')
  const a1 = await cluster.add('a1', '[labels]\nfar = "yes"\n')
  const a2 = await cluster.add('a2')
  await Promise.all([a1, a2].map(async a => await a.start(['join', seed], START_MS, { BOLT_TOKEN: a0.ready!.token })))

  const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
  t.teardown(async () => { await browser.close() })
  const page = await browser.newPage()
  await page.setViewport({ width: 1280, height: 800 })
  const dialogs: string[] = []
  page.on('dialog', (d) => { dialogs.push(d.message()); void d.dismiss() })
  const pageErrors: string[] = []
  page.on('pageerror', (e) => { pageErrors.push(String(e)) })
  const members = async (): Promise<Record<string, string>> => await page.$$eval('tr[data-member]', rows => Object.fromEntries(rows.map(r => [r.getAttribute('data-member') ?? '', r.getAttribute('data-state') ?? ''])))
  const waitMembers = async (want: Record<string, string>, timeout: number): Promise<boolean> => {
    return await page.waitForFunction((w: Record<string, string>) => Object.entries(w).every(([n, s]) => document.querySelector(`tr[data-member="${n}"]`)?.getAttribute('data-state') === s), { timeout, polling: 200 }, want).then(() => true, () => false)
  }

  await t.test('log in through the link; all three alive, the leader marked', async t => {
    const noCookie = await page.goto(`${a0.ready!.api}/ui/`)
    t.equal(noCookie?.status(), 401, 'before logging in: 401')
    t.match(await page.$eval('main', m => m.textContent ?? ''), /bolt-agent ui/, 'and the login page')
    const ui = await a0.cli(['ui', '--json'])
    const { url } = JSON.parse(ui.stdout) as { url: string }
    await page.goto(url)
    t.equal(new URL(page.url()).pathname, '/ui/', 'the link lands on the dashboard')
    t.equal(await page.evaluate(() => document.cookie), '', 'the session cookie is out of reach of scripts (HttpOnly)')
    t.equal(await page.evaluate(() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage)), '{}{}', 'nothing in browser storage')
    const all = await waitMembers({ a0: 'alive', a1: 'alive', a2: 'alive' }, 60_000)
    t.ok(all, `three members alive (${JSON.stringify(await members())})`)
    await page.waitForSelector('[data-testid=leader-mark]', { timeout: 30_000 }).catch(() => undefined)
    t.equal((await page.$$('[data-testid=leader-mark]')).length, 1, 'one member marked leader')
    const cell = await page.$eval('tr[data-member="a0"]', r => r.textContent ?? '')
    t.ok(cell.includes(XSS), 'a label holding markup is shown as its text')
    t.equal(await page.$$eval('main img', imgs => imgs.length), 0, 'and made no element')
    await page.screenshot({ path: join(REPORTS, 'ui-cluster.png') })
    await page.reload()
    await page.waitForSelector('tr[data-member]')
    await page.keyboard.press('Tab')
    t.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content', 'the keyboard starts at a skip link')
  })

  await t.test('kill -9 one agent: shown dead without a reload', async t => {
    await page.evaluate(() => { (window as unknown as { marker: number }).marker = 42 })
    await a2.kill9()
    t.ok(await waitMembers({ a2: 'dead' }, 30_000), `a2 dead on the page (${JSON.stringify(await members())})`)
    t.equal(await page.evaluate(() => (window as unknown as { marker?: number }).marker), 42, 'the same page: no reload')
    t.match(await page.$eval('.timeline', e => e.textContent ?? ''), /a2/, 'the timeline names it')
  })

  await t.test('run a capsule from the form: running, logs arrive; stop: exited', async t => {
    await page.goto(`${a0.ready!.api}/ui/#/capsules`)
    await page.waitForSelector('[data-testid=run-form]')
    await page.type('input[name=name]', 'ui-hello')
    await page.type('input[name=args]', `/bin/sh -c 'i=0; while true; do echo ui-line-$i; i=$((i+1)); sleep 1; done'`)
    await page.type('textarea[name=labels]', `note=${XSS}`)
    await page.type('textarea[name=on]', 'far=yes') // on a1, while the page is a0's: a0 asks a1 for its CPU and memory
    await page.click('form.run button[type=submit]')
    await page.waitForFunction(() => location.hash === '#/capsule/ui-hello', { timeout: 30_000 })
    const running = await page.waitForSelector('tr[data-instance="ui-hello"][data-state="running"]', { timeout: 120_000 }).then(() => true, () => false)
    t.ok(running, 'the instance shows running')
    const logs = await page.waitForFunction(() => /ui-line-\d+[\s\S]*ui-line-\d+/.test(document.querySelector('[data-testid=logs]')?.textContent ?? ''), { timeout: 60_000, polling: 250 }).then(() => true, () => false)
    t.ok(logs, 'its log lines arrive')
    const stats = await page.waitForFunction(() => document.querySelectorAll('[data-testid=stats] .uplot').length === 2, { timeout: 60_000, polling: 500 }).then(() => true, () => false)
    t.ok(stats, `its CPU and memory graphs appear, read on a1 (${await page.$eval('[aria-labelledby=stats-h]', e => e.textContent ?? '').catch(() => 'no stats section')})`)
    t.equal(await page.$eval('tr[data-instance="ui-hello"] td:nth-of-type(2)', e => e.textContent ?? ''), 'a1', 'the instance runs on a1')
    const labels = await page.waitForFunction((x: string) => (document.querySelector('[data-testid=capsule-labels]')?.textContent ?? '').includes(x), { timeout: 10_000 }, XSS).then(() => true, () => false)
    t.ok(labels, 'the capsule label is shown as its text')
    t.equal(await page.$$eval('main img', imgs => imgs.length), 0, 'no element made of it')
    await page.screenshot({ path: join(REPORTS, 'ui-capsule.png'), fullPage: true })
    await page.setViewport({ width: 390, height: 844 })
    t.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), 'at phone width the page does not scroll sideways')
    await page.screenshot({ path: join(REPORTS, 'ui-capsule-phone.png') })
    await page.setViewport({ width: 1280, height: 800 })
    // Scale from the page, as `bolt-agent scale`: one more instance, the first keeps running.
    await page.$eval('form.inline input[name=replicas]', (el) => { (el as unknown as { value: string }).value = '' })
    await page.type('form.inline input[name=replicas]', '2')
    await page.click('form.inline button[type=submit]')
    const scaled = await page.waitForSelector('tr[data-instance="ui-hello-1"]', { timeout: 60_000 }).then(() => true, () => false)
    t.ok(scaled, 'scaled to 2: a second instance appears')
    t.equal(await page.$$eval('tr[data-instance="ui-hello"][data-state="running"]', r => r.length), 1, 'the first instance kept running')
    const [stop] = await page.$$('xpath/.//button[text()="Stop"]')
    await stop!.click()
    const exited = await page.waitForSelector('tr[data-instance="ui-hello"][data-state="exited"]', { timeout: 60_000 }).then(() => true, () => false)
    t.ok(exited, 'stopped: exited')
  })

  await t.test('a stack from pasted TOML: up in depends_on order, then down', async t => {
    await page.goto(`${a0.ready!.api}/ui/#/capsules`)
    await page.waitForSelector('[data-testid=stack-up]')
    const logText = async (): Promise<string> => await page.$eval('[data-testid=stack-log]', e => e.textContent ?? '').catch(() => '')
    await page.click('[data-testid=stack-up]')
    const up = await page.waitForFunction(() => /stack up|failed|not running|not healthy|expected|invalid/.test(document.querySelector('[data-testid=stack-log]')?.textContent ?? ''), { timeout: 180_000, polling: 250 }).then(() => true, () => false)
    const upLog = await logText()
    t.ok(up && upLog.includes('stack up'), `the stack comes up (${upLog})`)
    t.ok(upLog.indexOf('db: running') >= 0 && upLog.indexOf('db: running') < upLog.indexOf('web: submitted'), 'db runs before web is submitted')
    t.equal(await page.$$eval('tr[data-capsule="db"][data-state="running"], tr[data-capsule="web"][data-state="running"]', r => r.length), 2, 'both run in the table')
    await page.click('[data-testid=stack-down]')
    const down = await page.waitForFunction(() => /stack down/.test(document.querySelector('[data-testid=stack-log]')?.textContent ?? ''), { timeout: 60_000 }).then(() => true, () => false)
    t.ok(down, `the stack comes down (${await logText()})`)
    const gone = await page.waitForFunction(() => document.querySelectorAll('tr[data-capsule="db"], tr[data-capsule="web"]').length === 0, { timeout: 60_000 }).then(() => true, () => false)
    t.ok(gone, 'and leaves the table')
    await page.$eval('textarea[name=stack]', e => { (e as { value: string }).value = '' })
    await page.type('textarea[name=stack]', '[capsules.a]\nimage = 1\n')
    await page.click('[data-testid=stack-up]')
    const bad = await page.waitForFunction(() => /capsules\.a\.image/.test(document.querySelector('[data-testid=stack-log]')?.textContent ?? ''), { timeout: 15_000 }).then(() => true, () => false)
    t.ok(bad, `a bad stack file gets one line naming the key (${await logText()})`)
  })

  await t.test('graphs, images, objects, mirror and raft pages render from the API', async t => {
    for (const [hash, title] of [['graphs', 'Graphs'], ['images', 'Images'], ['objects', 'Objects'], ['mirror', 'Registry mirror'], ['raft', 'Raft']]) {
      await page.goto(`${a0.ready!.api}/ui/#/${hash}`)
      const ok = await page.waitForFunction((x: string) => document.querySelector('main h1')?.textContent === x, { timeout: 15_000 }, title).then(() => true, () => false)
      t.ok(ok, `#/${hash} shows ${title}`)
      t.equal(await page.$$eval('main [role=alert]', e => e.length), 0, `#/${hash} shows no error`)
    }
    // The pull form: a reference no registry could serve gives one error line, shown as text.
    await page.goto(`${a0.ready!.api}/ui/#/images`)
    await page.waitForSelector('input[name=ref]')
    await page.type('input[name=ref]', 'Not A Reference!')
    await page.$eval('form[aria-label="Pull an image"]', f => { f.requestSubmit() })
    const pullErr = await page.waitForSelector('main [role=alert]', { timeout: 60_000 }).then(async e => await e!.evaluate((x: { textContent: string | null }) => x.textContent ?? ''), () => '')
    t.match(pullErr, /invalid image reference/, `a failed pull says why (${pullErr.slice(0, 120) || await page.$eval('main', e => e.textContent ?? '')})`)
    await page.goto(`${a0.ready!.api}/ui/#/graphs`)
    const charts = await page.waitForFunction(() => document.querySelectorAll('main .uplot').length === 5, { timeout: 15_000 }).then(() => true, () => false)
    t.ok(charts, 'five time-series charts')
    await page.screenshot({ path: join(REPORTS, 'ui-graphs.png') })
    await page.goto(`${a0.ready!.api}/ui/#/raft`)
    t.ok(await page.waitForFunction(() => /Voters \([23]\)[\s\S]*\(leader\)/.test(document.querySelector('main')?.textContent ?? ''), { timeout: 30_000 }).then(() => true, () => false), 'the Raft page lists the voters (a2, dead, may be removed by now) and the leader')
  })

  const imageRow = async (ref: string): Promise<{ peers: string, registry: string } | undefined> => await page.$eval(`tr[data-image="${ref}"]`, r => ({ peers: r.getAttribute('data-peers') ?? '', registry: r.getAttribute('data-registry') ?? '' })).catch(() => undefined)
  let peerRef: string | undefined
  await t.test('images: bytes from peers per image; a capsule start\'s pull in progress', { skip: existsSync(REGISTRY_BIN) ? false : 'needs docker-registry (.ci/run installs it)' }, async t => {
    const registry = await startRegistry()
    t.teardown(async () => { await registry.stop() })
    const img = await buildImage({ extraLayerSizes: [2 * 1024 * 1024] })
    await pushImage(registry.url, 'ui/peer', '1', img)
    // a1 pulls from the registry; a0, whose page this is, then pulls from the form: from a1.
    const ref = `${registry.host}/ui/peer:1`
    const first = await a1.cli(['pull', '--json', ref], 120_000)
    t.equal(first.code, 0, `a1 pulls from the registry ${first.stderr.trim()}`)
    await page.goto(`${a0.ready!.api}/ui/#/images`)
    await page.waitForSelector('input[name=ref]')
    await page.type('input[name=ref]', ref)
    await page.$eval('form[aria-label="Pull an image"]', f => { f.requestSubmit() })
    const row = await page.waitForSelector(`tr[data-image="${ref}"]`, { timeout: 120_000 }).then(() => true, () => false)
    t.ok(row, `the pulled image is listed (${await page.$eval('main', e => e.textContent ?? '')})`)
    const got = await imageRow(ref)
    t.ok(Number(got?.peers) > 0, `bytes from peers > 0 (${JSON.stringify(got)})`)
    t.equal(got?.registry, '0', 'and none from the registry')
    peerRef = ref

    // A capsule start pulls for itself: its pull shows with a progress bar, through a slow link.
    const slow = await startCountingProxy(registry.url, { bytesPerSecond: 256 * 1024 })
    t.teardown(async () => { await slow.stop() })
    const fresh = await buildImage({ extraLayerSizes: [3 * 1024 * 1024] })
    await pushImage(registry.url, 'ui/slow', '1', fresh)
    const slowRef = `${slow.host}/ui/slow:1`
    const run = await a0.cli(['run', '-d', slowRef, '--name', 'ui-pulling', '--on', 'home=yes', '--', '/bin/sh', '-c', untilStopped()])
    t.equal(run.code, 0, `the capsule is submitted ${run.stderr.trim()}`)
    t.teardown(async () => { await a0.cli(['rm', 'ui-pulling']).catch(() => undefined) }) // the cluster goes with the test anyway
    const bar = await page.waitForSelector(`li[data-pull="${slowRef}"][data-started-by="capsule"] progress`, { timeout: 60_000 }).then(() => true, () => false)
    t.ok(bar, `the capsule start's pull shows in progress with a bar (${await page.$eval('[aria-labelledby=pulls-h]', e => e.textContent ?? '')})`)
    const valueNow = async (): Promise<number> => await page.$eval(`li[data-pull="${slowRef}"] progress`, e => Number(e.getAttribute('value') ?? 0)).catch(() => 0)
    const before = await valueNow()
    const moved = await page.waitForFunction((r: string, v: number) => {
      const bar = document.querySelector(`li[data-pull="${r}"] progress`)
      return bar === null || Number(bar.getAttribute('value') ?? 0) > v // gone: it finished, having moved
    }, { timeout: 60_000, polling: 250 }, slowRef, before).then(() => true, () => false)
    t.ok(moved, `and its bar moves without a reload (from ${before})`)
    await page.screenshot({ path: join(REPORTS, 'ui-images.png'), fullPage: true })
    const done = await page.waitForSelector(`tr[data-image="${slowRef}"]`, { timeout: 120_000 }).then(() => true, () => false)
    t.ok(done, 'once pulled it leaves the list and the image is listed')
    t.equal(await page.$$eval(`li[data-pull="${slowRef}"]`, e => e.length), 0, 'no longer in progress')
    await a0.cli(['rm', 'ui-pulling'])
  })

  await t.test('the agent restarts: the page reconnects its stream', async t => {
    await page.goto(`${a0.ready!.api}/ui/#/cluster`)
    await page.waitForSelector('[data-testid=connection]')
    t.ok(await waitMembers({ a0: 'alive' }, 10_000), 'the cluster page is live')
    await a0.stop()
    const off = await page.waitForFunction(() => document.querySelector('[data-testid=connection]')?.textContent === 'reconnecting…', { timeout: 15_000 }).then(() => true, () => false)
    t.ok(off, 'the page says it lost the agent')
    await a0.start(['start'], START_MS)
    const on = await page.waitForFunction(() => document.querySelector('[data-testid=connection]')?.textContent === 'live', { timeout: 30_000, polling: 250 }).then(() => true, () => false)
    t.ok(on, 'and is live again without a reload')
    // A change after the restart still arrives: the dead member comes back.
    await a2.start(['start'], START_MS)
    t.ok(await waitMembers({ a2: 'alive' }, 60_000), `a2 alive again on the page (${JSON.stringify(await members())})`)
    if (peerRef !== undefined) {
      await page.goto(`${a0.ready!.api}/ui/#/images`)
      await page.waitForSelector(`tr[data-image="${peerRef}"]`, { timeout: 15_000 }).catch(() => undefined)
      const got = await imageRow(peerRef)
      t.ok(Number(got?.peers) > 0 && got?.registry === '0', `after the restart the image still shows its bytes from peers (${JSON.stringify(got)})`)
    }
  })

  t.same(dialogs, [], 'no script from user data ran (no alert)')
  t.same(pageErrors, [], 'no errors in the page')
})
