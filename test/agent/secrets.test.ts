// The join token is a secret (issue #21, finding 7): `join` takes it from
// BOLT_TOKEN or --token-file, so it is in no process's command line, and no
// agent prints it at start-up; `bolt-agent token` prints it when asked.
import t from 'tap'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Cluster, seedAddr, waitFor } from '../helpers/harness.js'

/** pids whose /proc/PID/cmdline holds `needle` (processes that end while we read are skipped). */
async function cmdlinesHolding (needle: string): Promise<string[]> {
  const found: string[] = []
  for (const pid of (await readdir('/proc')).filter(d => /^\d+$/.test(d))) {
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
    if (cmd.includes(needle)) found.push(`${pid}: ${cmd.replace(/\0/g, ' ').slice(0, 200)}`)
  }
  return found
}

t.test('join takes the token from BOLT_TOKEN or --token-file; no cmdline and no start-up output holds it', async t => {
  const cluster = await Cluster.create()
  t.teardown(async () => { await cluster.destroy() })
  const a0 = await cluster.add('a0')
  await a0.start(['init'])
  const token = a0.ready!.token
  t.match(token, /^bolt1_/, '`token --json` gives the token')
  t.match(a0.ready!.join, /^bolt-agent join \S+ --token bolt1_/, '`token --json` gives the join command')
  const secret = token.split('_').pop() as string
  const printed = (lines: string[]): boolean => lines.some(l => l.includes(secret))
  t.notOk(printed(a0.stdoutLines), 'init\'s ready line has no token')
  t.notOk(printed(a0.stderrTail), 'init\'s logs have no token')

  const viaEnv = await cluster.add('env')
  await viaEnv.start(['join', seedAddr(a0, 'quic')], 60_000, { BOLT_TOKEN: token })
  t.notOk(printed(viaEnv.stdoutLines) || printed(viaEnv.stderrTail), 'join prints no token')
  t.same(await cmdlinesHolding(secret), [], 'no process has the token in its command line')

  const file = join(cluster.root, 'token')
  await writeFile(file, `${token}\n`, { mode: 0o600 })
  const viaFile = await cluster.add('file')
  await viaFile.start(['join', seedAddr(a0, 'tcp'), '--token-file', file], 60_000)

  // --token still works; the agent overwrites its command line once it has read it.
  const viaFlag = await cluster.add('flag')
  await viaFlag.start(['join', seedAddr(a0, 'quic'), '--token', token], 60_000)
  t.same(await cmdlinesHolding(secret), [], 'an agent given --token hides it from the process list')

  const all = await waitFor(async () => (await a0.status())?.members.filter(m => m.state === 'alive').length === 4, 30_000, 500)
  t.ok(all >= 0, 'all three joined: 4 members alive')

  const noToken = await cluster.add('none')
  const err = await noToken.start(['join', seedAddr(a0, 'quic')], 30_000, { BOLT_TOKEN: '' }).then(() => undefined, (e: Error) => e)
  t.ok(err, 'join without a token fails')
  t.equal(await noToken.exited, 2, 'bad usage: exit 2')
  t.match(noToken.stderrTail.join('\n'), /join needs the join token: BOLT_TOKEN=T bolt-agent join ADDR, or --token-file FILE/, 'one line saying where the token goes')
})
