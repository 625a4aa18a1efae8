// The stack the rolling-update tests apply: 3 replicas of busybox httpd
// behind an http check, each version serving its name at /.
import { untilStopped } from './harness.js'

/** A stack `roll` whose capsule `web` runs `cmd` in busybox sh. */
export function rollStack (image: string, cmd: string): string {
  return `name = "roll"
[capsules.web]
image = "${image}"
replicas = 3
memory = "16M"
args = ["/bin/sh", "-c", ${JSON.stringify(cmd)}]
[capsules.web.health]
check = "http:8080/"
interval = "300ms"
timeout_ms = 60000
`
}

/** The command that serves `version` on port 8080. */
export const serveVersion = (version: string): string => `mkdir -p /www && echo ${version} > /www/index.html || exit 1; ${untilStopped('httpd -f -p 8080 -h /www')}`
