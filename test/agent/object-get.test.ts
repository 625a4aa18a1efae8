// Security issue #21, finding 3: `POST /v1/objects/:id/get` with a `dest` of
// the caller's choosing let any API token holder write any file as root.
// Against a real agent: a dest outside `[objects] dest_root` (directly, or
// through a symlink inside it) is refused and nothing is written; inside it
// works; `bolt-agent object get ID DEST` still works anywhere the user may
// write, since the agent streams the bytes and the CLI writes DEST.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Cluster } from '../helpers/harness.js'
import { RAFT_TOML, apiOf } from '../../scenarios/_raft.js'

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

t.test('object get: the agent writes only under [objects] dest_root; the CLI writes DEST itself', async t => {
  const cluster = await Cluster.create(RAFT_TOML(1))
  t.teardown(async () => { await cluster.destroy() })
  const root = join(cluster.root, 'objects-out')
  const outside = join(cluster.root, 'elsewhere')
  await mkdir(root)
  await mkdir(outside)
  await symlink(outside, join(root, 'escape'))
  const a = await cluster.add('a', `[mirror]\nenabled = false\n[objects]\ndest_root = "${root}"\n`)
  await a.start(['init'])

  const data = randomBytes(2 * 1024 * 1024 + 321)
  const file = join(cluster.root, 'obj.bin')
  await writeFile(file, data)
  const put = await a.cli(['object', 'put', file, '--replicas', '0', '--json'])
  t.equal(put.code, 0, `put exits 0 ${put.stderr.trim()}`)
  const { id } = JSON.parse(put.stdout) as { id: string }

  const api = await apiOf(a)
  const getTo = async (dest: string): Promise<{ status: number, body: { error?: string, size?: number } }> => {
    const res = await fetch(`${api.url}/v1/objects/${encodeURIComponent(id)}/get`, {
      method: 'POST',
      headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ dest }),
      signal: AbortSignal.timeout(30_000)
    })
    return { status: res.status, body: await res.json() as { error?: string, size?: number } }
  }

  await t.test('the attack: a token holder names a destination outside the allowed root', async t => {
    const target = join(outside, 'authorized_keys')
    const direct = await getTo(target)
    t.equal(direct.status, 403, 'refused')
    t.match(direct.body.error, `object get: ${target} is outside [objects] dest_root (${root})`)
    const viaLink = await getTo(join(root, 'escape', 'authorized_keys'))
    t.equal(viaLink.status, 403, 'refused through a symlink inside the root that points out of it')
    t.same(await readdir(outside), [], 'nothing was written outside the root')
    const bad = await fetch(`${api.url}/v1/objects/${encodeURIComponent('../../etc')}/get`, { method: 'POST', headers: { authorization: `Bearer ${api.token}` }, body: JSON.stringify({ dest: join(root, 'x') }) })
    t.equal(bad.status, 400, 'an id that is not a digest is refused')
  })

  await t.test('inside the root the agent writes it', async t => {
    const dest = join(root, 'copy.bin')
    const r = await getTo(dest)
    t.equal(r.status, 200, `written (${JSON.stringify(r.body)})`)
    t.equal(sha(await readFile(dest)), sha(data), 'same bytes')
  })

  await t.test('bolt-agent object get ID DEST: the agent streams, the CLI writes DEST (anywhere the user may)', async t => {
    const dest = join(outside, 'cli-copy.bin')
    const get = await a.cli(['object', 'get', id, dest, '--json'], 60_000)
    t.equal(get.code, 0, `exits 0 ${get.stderr.trim()}`)
    t.match(JSON.parse(get.stdout), { id, size: data.length, locatedBy: 'members', asked: [] }, 'the same JSON as before, locatedBy included')
    t.equal(sha(await readFile(dest)), sha(data), 'same bytes')
    t.same((await readdir(outside)).filter(n => n.endsWith('.part')), [], 'no temp file left')
    const missing = await a.cli(['object', 'get', `sha256:${'0'.repeat(64)}`, join(outside, 'none.bin')], 30_000)
    t.equal(missing.code, 1, 'an object nobody holds: exit 1')
    t.match(missing.stderr, /is not held by this node or any of 0 peers asked/)
    t.notOk(existsSync(join(outside, 'none.bin')), 'and no file')
  })
})
