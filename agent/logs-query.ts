// What `bolt-agent logs` may ask, shared by the CLI, the API and the logs
// protocol. No imports: every client command may load it.

/** The most lines `--tail` may ask for per instance (native/logs.ts keeps them in a ring until caught up). */
export const MAX_TAIL = 100_000
