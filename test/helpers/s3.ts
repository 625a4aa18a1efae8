// Shared by the S3 tests: agents' config with an S3 listener on a free
// port, access keys through the CLI, and the real aws-cli (always Debian's
// /usr/bin/aws: a pyenv aws 1.x may shadow it on PATH) with its own HOME.
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { AgentProcess } from './harness.js'
import { RAFT_TOML } from '../../scenarios/_raft.js'

export const S3_TOML = (voters: number, s3Extra = ''): string => `${RAFT_TOML(voters)}\n[mirror]\nenabled = false\n[s3]\nlisten = "127.0.0.1:0"\n${s3Extra}\n`
const AWS = '/usr/bin/aws'

export interface S3Creds { accessKey: string, secretKey: string, endpoint: string }

export async function s3Key (a: AgentProcess, args: string[] = []): Promise<S3Creds> {
  const r = await a.cli(['s3', 'key', 'create', ...args, '--json'], 30_000)
  if (r.code !== 0) throw new Error(`s3 key create: ${r.stderr}`)
  return JSON.parse(r.stdout) as S3Creds
}

export async function s3Endpoint (a: AgentProcess): Promise<string> {
  const api = JSON.parse(await readFile(join(a.dataDir, 'api.json'), 'utf8')) as { url: string, token: string }
  const res = await fetch(`${api.url}/v1/s3`, { headers: { authorization: `Bearer ${api.token}` } })
  return ((await res.json()) as { url: string }).url
}

export async function aws (home: string, creds: { accessKey: string, secretKey: string }, endpoint: string, args: string[], timeoutMs = 120_000): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise(resolve => {
    execFile(AWS, ['--endpoint-url', endpoint, ...args], {
      timeout: timeoutMs,
      maxBuffer: 16 * 1024 * 1024,
      env: { PATH: '/usr/bin:/bin', HOME: home, AWS_ACCESS_KEY_ID: creds.accessKey, AWS_SECRET_ACCESS_KEY: creds.secretKey, AWS_DEFAULT_REGION: 'us-east-1', AWS_CONFIG_FILE: join(home, 'config'), AWS_SHARED_CREDENTIALS_FILE: join(home, 'credentials'), AWS_PAGER: '' }
    }, (err, stdout, stderr) => { resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? 1), stdout, stderr }) })
  })
}

