// Reasons an instance carries that clients compare against. No imports:
// `bolt-agent run` loads it without zod.

/** The reason a new instance carries until the scheduler has looked at it (`run` waits past it). */
export const WAITING_FOR_SCHEDULER = 'waiting for the scheduler'
