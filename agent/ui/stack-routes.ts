// `POST /v1/ui/stack`: the dashboard's stack form. The agent parses the
// pasted TOML with the CLI's own parser (agent/stack.ts) and answers the
// plan: the capsules in depends_on order with their specs; the page then
// creates them one by one (as `bolt-agent up` does) or removes them in
// reverse (`down`). The parser loads on the first use.
import { z } from 'zod'
import { ApiError, type ApiServer } from '../api/server.js'

/** Largest stack file the form takes. */
export const MAX_STACK_CHARS = 256 * 1024

const Body = z.strictObject({ toml: z.string().max(MAX_STACK_CHARS) })

export interface StackStep {
  name: string
  spec: Record<string, unknown>
  /** Dependencies as the service names whose addresses the capsule gets in BOLT_SERVICE_* variables. */
  deps: Array<{ capsule: string, service: string }>
  /** Wait for a healthy node-side check, not only running. */
  waitHealthy: boolean
  timeoutMs: number
}

export function registerStackRoutes (api: ApiServer): void {
  api.route('POST', '/v1/ui/stack', async (req) => {
    const body = Body.safeParse(await req.body())
    if (!body.success) throw new ApiError(400, `expected {"toml": TEXT} of at most ${MAX_STACK_CHARS} characters`)
    const { parseStack, startOrder, specOf, StackError } = await import('../stack.js')
    try {
      const stack = parseStack(body.data.toml, 'the stack')
      const steps: StackStep[] = startOrder(stack).map(name => {
        const c = stack.capsules[name]!
        return {
          name,
          spec: specOf(name, c),
          deps: c.depends_on.map(d => ({ capsule: d, service: stack.capsules[d]?.service ?? d })),
          waitHealthy: c.health?.check !== undefined,
          timeoutMs: c.health?.timeout_ms ?? 120_000
        }
      })
      return { name: stack.name ?? null, steps }
    } catch (err) {
      if (err instanceof StackError) throw new ApiError(400, err.message)
      throw err
    }
  })
}
