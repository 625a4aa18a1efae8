// Runs as an unprivileged user for rootless.test: one capsule through a
// rootless runtime, its exit and log printed as JSON.
import { createRuntime } from '../../native/index.js'
import { busyboxLayer, writeLayout } from './image-fixture.js'

const [work, runtime] = process.argv.slice(2) as [string | undefined, 'runc' | 'crun']
if (work === undefined) {
  process.stdout.write('1..0 # SKIP helper for rootless.test (needs a work dir argument)\n')
  process.exit(0)
}
try {
  const img = await writeLayout(`${work}/layout`, [await busyboxLayer()])
  const rt = await createRuntime({ dataDir: `${work}/data`, runtime })
  const { id } = await rt.prepareImage(img.layoutDir, img.ref)
  const h = await rt.run({ name: 'rl', image: id, args: ['sh', '-c', 'id -u; head -1 /proc/self/uid_map; exit 3'] })
  const exit = await h.exited
  const lines: string[] = []
  for await (const r of rt.logs('rl')) lines.push(r.line)
  await rt.remove('rl')
  await rt.close()
  process.stdout.write(JSON.stringify({ exit, lines }) + '\n')
} catch (err) {
  process.stdout.write(JSON.stringify({ error: (err as Error).name, message: (err as Error).message }) + '\n')
}
