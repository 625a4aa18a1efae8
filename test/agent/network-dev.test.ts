// `bolt-agent dev` with a bridge capsule, in a namespace of its own: once
// Ctrl-C has stopped it, its capsule namespace, veth, bridge and nft table
// are gone with its data dir.
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { CLI, killCapsules, runCli, waitFor } from '../helpers/harness.js'
import { netnsUnavailable, sh } from '../edge/netlab.js'
import { netnsPrefix } from '../../native/index.js'
import { busyboxPath, DEMO_REF } from '../../agent/demo-image.js'

const haveRunc = existsSync('/usr/sbin/runc') || existsSync('/usr/bin/runc')

t.test('dev exits leaving no capsule network behind', { timeout: 400_000 }, async t => {
  const why = process.getuid?.() !== 0 ? 'needs root' : !haveRunc ? 'needs runc' : busyboxPath() === undefined ? 'needs busybox-static' : await netnsUnavailable()
  if (why !== undefined) { t.comment(`skipped: ${why}`); return }
  const ns = `bdev${process.pid}`
  await sh('ip', ['netns', 'add', ns])
  await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  const enter = ['nsenter', `--net=/run/netns/${ns}`]
  const p = spawn(enter[0] as string, [...enter.slice(1), process.execPath, CLI, 'dev'], { env: { ...process.env, BOLT_LOG_JSON: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<number | null>(resolve => p.on('exit', (code, sig) => resolve(code ?? (sig !== null ? 128 : null))))
  const stderr: string[] = []
  createInterface({ input: p.stderr }).on('line', l => { stderr.push(l) })
  let dataDir = ''
  t.teardown(async () => {
    p.kill('SIGKILL')
    if (dataDir !== '' && existsSync(dataDir)) await killCapsules(dataDir)
    const prefix = dataDir !== '' ? netnsPrefix(join(dataDir, 'runtime')) : '-'
    for (const n of (await sh('ip', ['netns', 'list']).catch(() => '')).split('\n').map(l => l.split(' ')[0] ?? '').filter(n => n.startsWith(prefix + '-'))) await sh('ip', ['netns', 'del', n]).catch(() => {})
    await sh('ip', ['netns', 'del', ns]).catch(() => {})
  })
  dataDir = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`dev not ready: ${stderr.slice(-3).join(' | ')}`)) }, 90_000)
    const lines: string[] = []
    createInterface({ input: p.stdout }).on('line', l => {
      lines.push(l)
      const m = /^data dir: (\S+)/.exec(l)
      if (m !== null) { clearTimeout(timer); resolve(m[1] as string) }
    })
    p.on('exit', code => { clearTimeout(timer); reject(new Error(`dev exited with ${code}: ${stderr.slice(-3).join(' | ')}`)) })
  })
  const cli = async (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> => await runCli(['--data', dataDir, ...args], { prefix: enter, timeoutMs: 30_000 })
  const prefix = netnsPrefix(join(dataDir, 'runtime'))
  const ours = async (): Promise<string[]> => (await sh('ip', ['netns', 'list'])).split('\n').map(l => l.split(' ')[0] ?? '').filter(n => n.startsWith(prefix + '-'))
  const ready = await waitFor(async () => (await cli(['status'])).code === 0, 60_000, 500)
  t.ok(ready >= 0, 'dev answers')
  const r = await cli(['run', DEMO_REF, '--name', 'web', '-p', '8080:80', '--memory', '16M', '--', '/bin/busybox', 'httpd', '-f', '-p', '80', '-h', '/etc'])
  t.equal(r.code, 0, `run exits 0 ${r.stderr.trim()}`)
  let body = ''
  const answered = await waitFor(async () => {
    body = await sh('nsenter', [...enter.slice(1), 'timeout', '5', 'busybox', 'nc', '127.0.0.1', '8080'], 'GET /hostname HTTP/1.0\r\n\r\n').catch(() => '')
    return body.includes('200 OK')
  }, 120_000, 1000)
  t.ok(answered >= 0, `the bridge capsule answers on its published port (${body.slice(0, 40)})`)
  t.equal((await ours()).length, 1, 'its namespace exists')
  t.match(await sh('nsenter', [...enter.slice(1), 'ip', '-o', 'link', 'show', 'bolt0']), /bolt0/, 'the bridge exists')

  p.kill('SIGINT')
  t.equal(await exited, 0, 'dev exits cleanly')
  t.notOk(existsSync(dataDir), 'its data dir is gone')
  t.same(await ours(), [], 'no capsule namespace left')
  t.equal(await sh('nsenter', [...enter.slice(1), 'ip', '-o', 'link', 'show', 'type', 'veth']), '', 'no veth left')
  t.notMatch(await sh('nsenter', [...enter.slice(1), 'ip', '-o', 'link']), /bolt0/, 'no bridge left')
  t.equal((await sh('nsenter', [...enter.slice(1), 'nft', 'list', 'tables'])).trim(), '', 'no nft table left')
})
