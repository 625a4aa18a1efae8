// A capsule restarted on the bridge usually takes the address its last
// instance freed. The host's neighbour cache still holds that address's MAC:
// with a random MAC per veth the host kept sending to the old one for up to
// ~50 s (health checks timed out, rollouts waited). The MAC is derived from
// the address, so the cached entry is right for the new capsule at once.
// Real bridge, veths and namespaces (root only).
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { BridgeNetwork } from '../../native/net/bridge.js'
import { macOfAddress } from '../../native/net/cidr.js'

const run = promisify(execFile)
const haveTools = process.getuid?.() === 0 && ['/usr/bin/ip', '/usr/sbin/ip', '/bin/ip', '/sbin/ip'].some(p => existsSync(p)) && (existsSync('/usr/sbin/nft') || existsSync('/sbin/nft'))

t.test('macOfAddress: one locally administered unicast MAC per address', async t => {
  t.equal(macOfAddress('10.78.3.2'), '02:b0:0a:4e:03:02')
  t.equal(macOfAddress('172.16.255.254'), '02:b0:ac:10:ff:fe')
  t.not(macOfAddress('10.78.3.2'), macOfAddress('10.78.4.2'), 'another subnet on a shared bridge: another MAC')
  t.throws(() => macOfAddress('fd00::1'), /not an IPv4 address/)
})

/** Resolves once the host's connect to `address` got an answer (a refusal: nothing listens there). */
async function knock (address: string): Promise<string> {
  return await new Promise(resolve => {
    const s = connect({ host: address, port: 9 })
    s.once('connect', () => { s.destroy(); resolve('connected') })
    s.once('error', (err: NodeJS.ErrnoException) => { s.destroy(); resolve(err.code ?? err.message) })
  })
}

async function eth0Mac (netns: string): Promise<string> {
  const rows = JSON.parse((await run('ip', ['-n', netns, '-j', 'link', 'show', 'eth0'])).stdout) as Array<{ address: string }>
  if (rows[0] === undefined) throw new Error(`no eth0 in ${netns}`)
  return rows[0].address
}

t.test('a capsule that takes a freed address is reached through the host\'s cached neighbour entry', { skip: haveTools ? false : 'needs root, ip and nft' }, async t => {
  const name = `bnb${process.pid % 100000}`
  const dir = await mkdtemp(join(tmpdir(), 'bolt-bridge-neigh-'))
  const net = new BridgeNetwork({ bridge: name, subnet: `10.77.${process.pid % 200}.0/24`, prefix: `bn${process.pid % 100000}`, stateDir: dir })
  t.teardown(async () => {
    await net.detach('one').catch(() => undefined) // gone already
    await net.detach('two').catch(() => undefined) // gone already
    await net.detach('keep').catch(() => undefined) // gone already
    await net.destroy().catch(() => undefined) // logged by the failing assertion if it matters
    await run('ip', ['link', 'del', name]).catch(() => undefined) // gone already
    await rm(dir, { recursive: true, force: true })
  })

  // Another capsule stays on the bridge, as in a node that restarts one of several.
  await net.attach('keep', [])
  const one = await net.attach('one', [])
  const oneMac = await eth0Mac(one.netns)
  t.equal(await knock(one.address), 'ECONNREFUSED', 'the host reaches the first capsule')
  await net.detach('one')
  // What the host holds after talking to it (the kernel may also have flushed it: then this is that entry back).
  await run('ip', ['neigh', 'replace', one.address, 'lladdr', oneMac, 'dev', name, 'nud', 'reachable'])

  const two = await net.attach('two', [])
  t.equal(two.address, one.address, 'the next capsule takes the freed address')
  t.equal(await eth0Mac(two.netns), oneMac, 'and the MAC that goes with it')
  t.equal(await knock(two.address), 'ECONNREFUSED', 'so the host reaches it through its cached entry')
})
