// Two agents on one host share a bridge of the same name. When one leaves
// (a dev agent's Ctrl-C, `leave`) it removes the bridge and its nft table
// once nothing is attached: the other agent's next capsule must still get
// its network, on a bridge set up again, with that agent's published ports
// back in the map. Real bridge, veths, namespaces and nft (root only).
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { BridgeNetwork } from '../../native/net/bridge.js'

const run = promisify(execFile)
const haveTools = process.getuid?.() === 0 && ['/usr/sbin/nft', '/usr/bin/ip', '/usr/sbin/ip', '/bin/ip', '/sbin/ip'].some(p => existsSync(p)) && (existsSync('/usr/sbin/nft') || existsSync('/sbin/nft'))

t.test('a bridge removed by another agent is set up again for the next capsule', { skip: haveTools ? false : 'needs root, ip and nft' }, async t => {
  const name = `bsh${process.pid % 100000}`
  const dir = await mkdtemp(join(tmpdir(), 'bolt-bridge-shared-'))
  const subnet = `10.79.${process.pid % 200}.0/24`
  const mine = new BridgeNetwork({ bridge: name, subnet, prefix: `bs${process.pid % 100000}a`, stateDir: join(dir, 'a') })
  const other = new BridgeNetwork({ bridge: name, subnet, prefix: `bs${process.pid % 100000}b`, stateDir: join(dir, 'b') })
  t.teardown(async () => {
    await mine.detach('one').catch(() => undefined)
    await mine.detach('two').catch(() => undefined)
    await mine.detach('three').catch(() => undefined)
    await other.destroy().catch(() => undefined)
    await run('nft', ['delete', 'table', 'ip', mine.table]).catch(() => undefined) // gone already
    await run('ip', ['link', 'del', name]).catch(() => undefined) // gone already
    await rm(dir, { recursive: true, force: true })
  })

  const one = await mine.attach('one', [{ proto: 'tcp', host: 40000 + (process.pid % 20000), container: 80 }])
  t.ok(existsSync(`/sys/class/net/${name}`), 'the bridge is up')
  await mine.detach('one')
  t.ok(existsSync(one.netnsPath) === false, 'the first capsule is gone')

  // The other agent leaves: nothing is attached, so it removes the bridge and the table.
  await other.ensure()
  await other.destroy()
  t.notOk(existsSync(`/sys/class/net/${name}`), 'the other agent removed the bridge')

  const port = 40000 + ((process.pid + 1) % 20000)
  const two = await mine.attach('two', [{ proto: 'tcp', host: port, container: 80 }])
  t.ok(existsSync(`/sys/class/net/${name}`), 'set up again for the next capsule')
  const master = (await run('ip', ['-j', 'link', 'show', 'master', name])).stdout
  t.match(master, two.veth, 'its veth is on the bridge')
  const map = (await run('nft', ['list', 'map', 'ip', mine.table, 'tcp_ports'])).stdout
  t.match(map, new RegExp(`${port} : ${two.address.replaceAll('.', '\\.')} \\. 80`), 'its published port is in the new table')

  // Removed by force while a capsule of ours is attached (by hand, or a crash): the next attach restores our ports too.
  await run('nft', ['delete', 'table', 'ip', mine.table])
  await run('ip', ['link', 'del', name])
  const port3 = 40000 + ((process.pid + 2) % 20000)
  await mine.attach('three', [{ proto: 'tcp', host: port3, container: 80 }])
  const map3 = (await run('nft', ['list', 'map', 'ip', mine.table, 'tcp_ports'])).stdout
  t.match(map3, new RegExp(`${port} : ${two.address.replaceAll('.', '\\.')} \\. 80`), 'the earlier capsule\'s port is back')
  t.match(map3, new RegExp(`${port3} : `), 'and the new one\'s')
})

t.test('an agent\'s reconcile keeps the forwards of another agent on the same bridge', { skip: haveTools ? false : 'needs root, ip and nft' }, async t => {
  const name = `bsk${process.pid % 100000}`
  const dir = await mkdtemp(join(tmpdir(), 'bolt-bridge-keep-'))
  // Agents on one host: one bridge, one nft table, a subnet each.
  const mine = new BridgeNetwork({ bridge: name, subnet: `10.78.${process.pid % 200}.0/24`, prefix: `bk${process.pid % 100000}a`, stateDir: join(dir, 'a') })
  const other = new BridgeNetwork({ bridge: name, subnet: `10.77.${process.pid % 200}.0/24`, prefix: `bk${process.pid % 100000}b`, stateDir: join(dir, 'b') })
  t.teardown(async () => {
    await mine.detach('kept').catch(() => undefined)
    await other.detach('theirs').catch(() => undefined)
    await run('nft', ['delete', 'table', 'ip', mine.table]).catch(() => undefined) // gone already
    await run('ip', ['link', 'del', name]).catch(() => undefined) // gone already
    await rm(dir, { recursive: true, force: true })
  })
  const base = 30000 + (process.pid % 5000) * 2
  const theirs = await other.attach('theirs', [{ proto: 'tcp', host: base, container: 80 }, { proto: 'udp', host: base, container: 53 }])
  const kept = await mine.attach('kept', [{ proto: 'tcp', host: base + 1, container: 8080 }])
  // A forward of ours that no record claims (a crash between the map and the record): reconcile removes it.
  const stale = `10.78.${process.pid % 200}.200`
  await run('nft', ['add', 'element', 'ip', mine.table, 'tcp_ports', `{ ${base + 2} : ${stale} . 80 }`])

  // `mine` restarts: its start-up reconcile rebuilds the maps from its own records.
  t.same(await mine.reconcile(new Set(['kept'])), [], 'nothing of ours to clean')
  const tcp = (await run('nft', ['list', 'map', 'ip', mine.table, 'tcp_ports'])).stdout
  const udp = (await run('nft', ['list', 'map', 'ip', mine.table, 'udp_ports'])).stdout
  const esc = (a: string): string => a.replaceAll('.', '\\.')
  t.match(tcp, new RegExp(`${base} : ${esc(theirs.address)} \\. 80`), 'the other agent\'s tcp forward stays')
  t.match(udp, new RegExp(`${base} : ${esc(theirs.address)} \\. 53`), 'and its udp forward')
  t.match(tcp, new RegExp(`${base + 1} : ${esc(kept.address)} \\. 8080`), 'our live capsule\'s forward is there')
  t.notMatch(tcp, new RegExp(`${base + 2} :`), 'our stale forward is gone')
})
