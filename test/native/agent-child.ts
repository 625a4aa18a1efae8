// A stand-in agent for the kill -9 test: starts two capsules on a data dir,
// says "ready", and waits to be killed.
import { createRuntime } from '../../native/index.js'
import { busyboxImage } from './image-fixture.js'

const [dataDir, runtime] = process.argv.slice(2) as [string | undefined, 'runc' | 'crun']
if (dataDir === undefined) {
  // Run by tap as a plain file of the folder: not a test by itself.
  process.stdout.write('1..0 # SKIP helper for recovery.test (needs a data dir argument)\n')
  process.exit(0)
}
const rt = await createRuntime({ dataDir, runtime })
const img = await busyboxImage()
const { id } = await rt.prepareImage(img.layoutDir, img.ref)
await rt.run({ name: 'long', image: id, args: ['sh', '-c', 'i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done'] })
await rt.run({ name: 'short', image: id, args: ['sh', '-c', 'sleep 1; echo bye; exit 4'] })
process.stdout.write('ready\n')
setInterval(() => undefined, 60_000)
