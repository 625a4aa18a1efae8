// Client commands added by later parts (kv, capsules, content). Each talks to
// the agent API and prints a table, or JSON with --json.
import type { Command } from 'commander'

export function registerClientCommands (_program: Command): void {
  // Filled in as the Raft, capsule and content parts land.
}
