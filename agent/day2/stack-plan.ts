// `up` of an edited stack: what differs between the capsules the cluster
// runs and the ones the stack file asks for, as Nomad's `job plan` shows it.
// Pure: the API route feeds it the committed records and the parsed specs.
import type { CapsuleRecord } from '../state/capsules.js'
import type { CapsuleSpec } from '../scheduler/spec.js'

/** The label `up` puts on a stack's capsules, so a capsule dropped from the file is found and removed. */
export const STACK_LABEL = 'bolt.stack'

export interface StackPlan {
  added: string[]
  /** `fields`: the top-level spec keys that differ; replicas alone is a scale (no instance is replaced). */
  changed: Array<{ name: string, fields: string[], replicas: { from: number, to: number } | null }>
  removed: string[]
  unchanged: string[]
}

/** Stable JSON: keys sorted at every level, so two equal specs compare equal whatever their key order. */
function canonical (v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).filter(k => (v as Record<string, unknown>)[k] !== undefined).sort().map(k => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`
  }
  return JSON.stringify(v)
}

/** The spec keys whose values differ between `a` and `b`, sorted. */
export function changedFields (a: CapsuleSpec, b: CapsuleSpec): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)])
  return [...keys].filter(k => canonical((a as Record<string, unknown>)[k]) !== canonical((b as Record<string, unknown>)[k])).sort()
}

export function planStack (stack: string, current: CapsuleRecord[], desired: CapsuleSpec[]): StackPlan {
  const plan: StackPlan = { added: [], changed: [], removed: [], unchanged: [] }
  const byName = new Map(current.map(c => [c.spec.name, c]))
  const wanted = new Set(desired.map(s => s.name))
  for (const s of desired) {
    const c = byName.get(s.name)
    if (c === undefined) { plan.added.push(s.name); continue }
    const fields = changedFields(c.spec, s)
    if (fields.length === 0) plan.unchanged.push(s.name)
    else plan.changed.push({ name: s.name, fields, replicas: fields.includes('replicas') ? { from: c.spec.replicas, to: s.replicas } : null })
  }
  for (const c of current) {
    if (c.spec.labels[STACK_LABEL] === stack && !wanted.has(c.spec.name)) plan.removed.push(c.spec.name)
  }
  plan.removed.sort()
  return plan
}

/** Whether applying a change replaces running instances (anything but the replica count changed). */
export function replacesInstances (fields: string[]): boolean {
  return fields.some(f => f !== 'replicas')
}
