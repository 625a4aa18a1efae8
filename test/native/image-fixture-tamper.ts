// Rewrites a test layout's config with a wrong diff_id, keeping every blob
// digest consistent, so only the uncompressed-content check can catch it.
import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

function sha (b: string): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex')
}

export async function rewriteDiffId (layoutDir: string): Promise<void> {
  const blob = (d: string): string => join(layoutDir, 'blobs', 'sha256', d.slice(7))
  const index = JSON.parse(await readFile(join(layoutDir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string, size: number }> }
  const md = index.manifests[0] as { digest: string, size: number }
  const manifest = JSON.parse(await readFile(blob(md.digest), 'utf8')) as { config: { digest: string, size: number } }
  const config = JSON.parse(await readFile(blob(manifest.config.digest), 'utf8')) as { rootfs: { diff_ids: string[] } }
  config.rootfs.diff_ids = config.rootfs.diff_ids.map(() => sha('something else'))
  const configText = JSON.stringify(config)
  manifest.config.digest = sha(configText)
  manifest.config.size = Buffer.byteLength(configText)
  await writeFile(blob(manifest.config.digest), configText)
  const manifestText = JSON.stringify(manifest)
  md.digest = sha(manifestText)
  md.size = Buffer.byteLength(manifestText)
  await writeFile(blob(md.digest), manifestText)
  await writeFile(join(layoutDir, 'index.json'), JSON.stringify(index))
}
