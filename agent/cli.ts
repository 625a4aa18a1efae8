// The `bolt-agent` command line. Agent commands (init, join, start, dev) run
// an agent in the foreground until SIGINT/SIGTERM; client commands talk to a
// running agent through its API. Exit codes: 0 ok, 1 failure, 2 bad usage.
// What loads when: the top of this file (and of cli-client.ts, cli-common.ts,
// api/client.ts) must stay light — commander, node: built-ins, the HTTP
// client — because every client command pays for it at start. zod alone
// costs more CPU to import than Node's own start; the agent, libp2p, pino and
// smol-toml far more. Agent commands import what they need inside runAgent.
// test/agent/cli-modules.test.ts checks what `status` loads.
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Command, CommanderError, Option } from 'commander'
import type { AgentMode } from './agent.js'
import type { StatusJson } from './status.js'
import type { Config } from './config.js'
import { UserError } from './errors.js'
import { AgentRequestError, AgentUnreachableError, ApiFileDamagedError } from './api/client.js'
import { client, collect, dataDirOf, handleClosedStdout, markAgentRunning, out, pairs, type GlobalOpts } from './cli-common.js'

/** The longest a graceful shutdown may take before the process exits anyway. */
const SHUTDOWN_DEADLINE_MS = 15_000
/** A second SIGINT/SIGTERM at least this long after the first exits at once. */
const FORCE_AFTER_MS = 2000

interface AgentCmdOpts { listen?: string[], api?: string, name?: string, role?: string, label?: string[], profile?: string, mirrorUpstream?: string, token?: string, tokenFile?: string, mdns?: boolean }

/** How long the join banner waits for autopilot to promote a `--role auto` joiner (it loses its turn after 10 s). */
const ROLE_SETTLE_MS = 15_000

/**
 * A `--role auto` joiner is a learner (client) when it is ready and becomes
 * a voter moments later if the cluster has fewer than raft.voters: wait for
 * that, so the banner names the role the node got, not the one it had.
 */
async function settledStatus (agent: { status: () => ReturnType<import('./agent.js').Agent['status']> }, voters: number, stopping: () => boolean): Promise<ReturnType<import('./agent.js').Agent['status']>> {
  const deadline = Date.now() + ROLE_SETTLE_MS
  for (;;) {
    const st = agent.status()
    const servers = st.members.filter(m => m.role === 'server').length
    if (st.node.role === 'server' || servers >= voters || Date.now() >= deadline || stopping()) return st
    await new Promise(resolve => setTimeout(resolve, 250))
  }
}

async function runAgent (g: GlobalOpts, o: AgentCmdOpts, mode: AgentMode, dev = false): Promise<void> {
  if (g.api !== undefined && !/^[^\s:]+:\d+$|^\[[0-9a-fA-F:]+\]:\d+$/.test(g.api)) {
    throw new UserError(`--api ${g.api}: agent commands take HOST:PORT to serve the API on (e.g. 127.0.0.1:7070)`, 2)
  }
  const flags: Record<string, unknown> = {
    listen: o.listen,
    name: o.name,
    role: o.role,
    profile: o.profile,
    log_level: g.logLevel,
    labels: o.label !== undefined ? pairs('--label', o.label) : undefined,
    // Only --no-mdns overrides the file: commander's default (true) must not.
    mdns: o.mdns === false ? false : undefined,
    api: g.api !== undefined ? { listen: g.api } : undefined,
    mirror: o.mirrorUpstream !== undefined ? { upstream: o.mirrorUpstream } : undefined
  }
  if (dev) {
    flags.listen ??= (await import('../quic/transports.js')).EPHEMERAL_LISTEN
    flags.api ??= { listen: '127.0.0.1:0' }
    flags.mirror = { ...(flags.mirror as object ?? {}), listen: '127.0.0.1:0' }
    flags.s3 = { listen: '127.0.0.1:0' }
  }
  // `start` runs the node as `init`/`join` set it up: their flags were saved in the data dir.
  const saved = await import('./day2/saved-flags.js')
  const effective = mode.kind === 'start' && !dev ? saved.mergeFlags(await saved.loadSavedFlags(dataDirOf(g)).catch((err: Error) => { throw new UserError(err.message) }), flags) : flags
  const { loadConfig } = await import('./config.js')
  const config: Config = await loadConfig(g.config, effective)
  // api/server.js imports node:http, whose ESM import loads undici: not at the top.
  const { checkApiListen } = await import('./api/server.js')
  try { checkApiListen(config.api.listen, config.api.allow_remote) } catch (err) { throw new UserError((err as Error).message) }
  markAgentRunning()
  if (mode.kind === 'join' && mode.addrs.length === 0 && !config.mdns) {
    throw new UserError('join needs the address of a member when mDNS is off (--no-mdns or mdns = false): BOLT_TOKEN=T bolt-agent join ADDR', 2)
  }
  // Before anything is opened: an edge agent restarts itself with small-machine
  // limits. The join token goes to the new process in its environment, never
  // in its argv; then it leaves the environment, so no child (runc, mount…) inherits it.
  const { TOKEN_ENV } = await import('./token-source.js')
  if (mode.kind === 'join') process.env[TOKEN_ENV] = (await import('../p2p/token.js')).formatToken(mode.token)
  ;(await import('./edge-runtime.js')).reexecForEdge(config)
  delete process.env[TOKEN_ENV]
  ;(await import('./gc-tuning.js')).tuneGc(config)
  const dataDir = dev ? await mkdtemp(join(tmpdir(), 'bolt-dev-')) : dataDirOf(g)
  const log = await (await import('./logger.js')).createLogger(config.log_level)
  // Loaded here, not at the top: client commands (status, pull, ps…) never
  // need libp2p, and importing it cost every CLI call 0.7 s of CPU.
  const { Agent } = await import('./agent.js')
  const agent = new Agent({ dataDir, config, mode, log, ephemeral: dev })
  let stoppingSince: number | undefined
  let started = false
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stoppingSince !== undefined) {
      // A second signal forces the exit, but not one right after the first:
      // that is the same Ctrl-C delivered twice (to the terminal's process
      // group and again by a wrapper such as npx or timeout), and exiting
      // then left dev's data dir and its demo capsule behind.
      if (Date.now() - stoppingSince >= FORCE_AFTER_MS) process.exit(130)
      return
    }
    stoppingSince = Date.now()
    log.info(`${sig}: shutting down`)
    // Shut down cleanly, but never hang: a stop that takes too long (or a
    // signal in the middle of start) still ends the process.
    setTimeout(() => { log.warn('shutdown took too long; exiting'); process.exit(1) }, SHUTDOWN_DEADLINE_MS).unref()
    void agent.stop().then(() => { if (!started) process.exit(130) })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    await agent.start()
    started = true
    if (!dev) await saved.saveFlags(dataDir, effective).catch((err: Error) => { log.warn(`cannot save the agent's flags for start: ${err.message}`) })
  } catch (err) {
    await agent.stop().catch((serr: Error) => { log.warn(`cannot stop cleanly after a failed start: ${serr.message}`) })
    throw err
  }
  // The join token is a secret: start-up output (often kept in logs) never
  // holds it; `bolt-agent token` prints it when asked.
  if (g.json === true) {
    out(JSON.stringify({ event: 'ready', node: agent.status().node, api: agent.apiUrl, mirror: agent.mirror?.url ?? null, dns: agent.services?.dns?.url ?? null, dashboard: `${agent.apiUrl}/ui/`, dataDir }))
  } else {
    const st = mode.kind === 'join' && config.role === 'auto' ? await settledStatus(agent, config.raft.voters, () => stoppingSince !== undefined) : agent.status()
    out(`bolt-agent ${mode.kind === 'init' || dev ? 'started a new cluster' : mode.kind === 'join' ? 'joined the cluster' : 'rejoined the cluster'}: node ${st.node.name} (${st.node.id}, ${st.node.role})`)
    out(`data dir: ${dataDir}   API: ${agent.apiUrl} (token in ${join(dataDir, 'api.json')})`)
    out(`dashboard: ${agent.apiUrl}/ui/   (log in with the link \`bolt-agent${dev || g.data !== undefined ? ` --data ${dataDir}` : ''} ui\` prints)`)
    if (dev) {
      // Submitting the demo goes through Raft, so by then the one-node
      // cluster has elected itself: the line names its leader.
      const why = await agent.runDemoCapsule().catch((err: Error) => err.message)
      const now = agent.status()
      const leader = now.members.find(m => m.id === now.leader)?.name ?? now.leader ?? 'electing'
      out(`members: ${now.members.map(m => `${m.name}=${m.state}`).join(', ')}   leader: ${leader}`)
      if (why === undefined) {
        out('demo capsule "demo" submitted (busybox printing the date):')
        out(`  bolt-agent --data ${dataDir} ps`)
        out(`  bolt-agent --data ${dataDir} logs demo -f`)
      } else {
        out(`no demo capsule: ${why}`)
      }
      out(`try:  bolt-agent --data ${dataDir} status`)
      out('Ctrl-C stops it and removes the data dir.')
    }
    out(`Join other machines with the command that \`bolt-agent${dev || g.data !== undefined ? ` --data ${dataDir}` : ''} token\` prints (it holds the cluster's join secret).`)
  }
  // The handlers stay until the process exits: a signal arriving after the
  // stop (the second of a doubled Ctrl-C) must not kill it mid-exit.
  await agent.stopped
}

/**
 * Commands whose module is loaded only when they are the command given: a
 * `run` then loads cli-run.js alone, not every command's file and options.
 * Any other word (another command, help, a typo) registers everything, in
 * the order `--help` lists.
 */
const ALONE: Record<string, (program: Command) => Promise<void>> = {
  run: async p => { (await import('./cli-run.js')).registerRunCommand(p) },
  mirror: async p => { (await import('./mirror/cli.js')).registerMirrorCommands(p) },
  ui: async p => { (await import('./ui/cli.js')).registerUiCommand(p) },
  registry: async p => { (await import('./registry/cli.js')).registerRegistryCommands(p) }
}

/** Global options that take a value, as buildProgram declares them (commander's own parse stays the authority). */
const VALUE_OPTIONS = new Set(['--data', '--config', '--api', '--api-token', '--log-level'])

/** The command word in `args` (argv without node and the script): the first operand after the global options. */
export function commandWord (args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string
    if (a === '--') return undefined
    if (!a.startsWith('-')) return a
    if (VALUE_OPTIONS.has(a)) i++
  }
  return undefined
}

export async function buildProgram (argv: string[] = process.argv): Promise<Command> {
  const program = new Command()
  program
    .name('bolt-agent')
    .description('peer-to-peer cluster agent: gossip membership, Raft scheduler, P2P images, OCI capsules')
    .version('0.1.0')
    .option('--data <dir>', 'the agent\'s data dir (env BOLT_DATA)')
    .option('--config <file>', 'TOML config file (keys as in cluster.example.toml)')
    .option('--json', 'machine-readable output on stdout')
    .option('--api <url|host:port>', 'client commands: the agent API URL; agent commands: HOST:PORT to serve the API on')
    .option('--api-token <token>', 'API bearer token (with --api URL)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']))
    .showHelpAfterError('(run bolt-agent --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })

  const agentOpts = (c: Command): Command => c
    .option('--listen <multiaddr>', 'listen address, repeatable (default QUIC and TCP on 7946)', collect)
    .option('--name <name>', 'this node\'s name (default: host name)')
    .option('--label <k=v>', 'node label for placement, repeatable', collect)
    .addOption(new Option('--profile <profile>', 'timing profile').choices(['lan', 'wan', 'edge']))
    .option('--mirror-upstream <host[:port]>', 'default upstream of the registry mirror')

  agentOpts(program.command('init').description('start a new cluster and print the join command'))
    .action(async (o: AgentCmdOpts) => { await runAgent(program.opts(), o, { kind: 'init' }) })

  agentOpts(program.command('join').description('join a cluster through any member').argument('[multiaddr...]', 'address of one or more members'))
    .option('--token <token>', `the join token (\`bolt-agent token\` on a member); other local users can read it in the process list while the agent starts: prefer BOLT_TOKEN=T or --token-file`)
    .option('--token-file <file>', 'read the join token from this file')
    .addOption(new Option('--role <role>', 'auto: a Raft voter while there are fewer than raft.voters').choices(['auto', 'server', 'client']))
    .option('--no-mdns', 'do not look for members on the local network')
    .action(async (addrs: string[], o: AgentCmdOpts) => {
      const { hideTokenArg, readJoinToken } = await import('./token-source.js')
      if (o.token !== undefined) hideTokenArg()
      const token = await readJoinToken({ flag: o.token, file: o.tokenFile })
      await runAgent(program.opts(), o, { kind: 'join', addrs, token })
    })

  agentOpts(program.command('start').description('restart an agent that already belongs to a cluster, from its data dir'))
    .action(async (o: AgentCmdOpts) => { await runAgent(program.opts(), o, { kind: 'start' }) })

  program.command('dev').description('a one-node cluster in a fresh temp dir, ready to use; Ctrl-C cleans up')
    .action(async () => { await runAgent(program.opts(), {}, { kind: 'init' }, true) })

  program.command('status').description('this node, the leader, the term and every member')
    .action(async () => {
      const g = program.opts<GlobalOpts>()
      const st = await (await client(g)).request<StatusJson>('GET', '/v1/status')
      if (g.json === true) { out(JSON.stringify(st)); return }
      out(`node    ${st.node.name} ${st.node.id} (${st.node.role})`)
      out(`leader  ${st.leader ?? 'none'}   term ${st.term}`)
      const rows = [['NAME', 'ID', 'STATE', 'ROLE', 'ADDR'], ...st.members.map(m => [m.name, m.id, m.state, m.role, m.addrs[0] ?? ''])]
      printTable(rows)
    })

  program.command('token').description('print the join token and join command')
    .option('--rotate', 'issue a new token; admitted members are undisturbed')
    .action(async (o: { rotate?: boolean }) => {
      const g = program.opts<GlobalOpts>()
      const c = await client(g)
      const t = o.rotate === true ? await c.request<{ token: string, addrs: string[], join: string }>('POST', '/v1/token/rotate') : await c.request<{ token: string, addrs: string[], join: string }>('GET', '/v1/token')
      if (g.json === true) { out(JSON.stringify(t)); return }
      out(t.token)
      out(t.join)
    })

  program.command('evict').description('remove a member for good (by name or id); replaces the cluster key and the join token')
    .argument('<node>', 'the member\'s name or peer id, as `status` lists it')
    .action(async (node: string) => {
      const g = program.opts<GlobalOpts>()
      const r = await (await client(g)).request<{ evicted: { id: string, name: string }, keyVersion: number, token: string, join: string }>('POST', '/v1/members/evict', { node })
      if (g.json === true) { out(JSON.stringify(r)); return }
      out(`evicted ${r.evicted.name} (${r.evicted.id}); cluster key version ${r.keyVersion}; the old token no longer works, the new one:`)
      out(r.token)
      out(r.join)
    })

  program.command('leave').description('tell the cluster this node leaves, then stop it')
    .action(async () => {
      const g = program.opts<GlobalOpts>()
      await (await client(g)).request('POST', '/v1/leave')
      if (g.json === true) out(JSON.stringify({ left: true }))
      else out('left the cluster; the agent is stopping')
    })

  const alone = ALONE[commandWord(argv.slice(2)) ?? '']
  if (alone !== undefined) {
    await alone(program)
    return program
  }
  const [clientCli, mirror, ui, registry, s3] = await Promise.all([import('./cli-client.js'), import('./mirror/cli.js'), import('./ui/cli.js'), import('./registry/cli.js'), import('./s3/cli.js')])
  clientCli.registerClientCommands(program)
  mirror.registerMirrorCommands(program)
  ui.registerUiCommand(program)
  registry.registerRegistryCommands(program)
  s3.registerS3Commands(program)
  return program
}

function printTable (rows: string[][]): void {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length))) ?? []
  for (const r of rows) out(r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)).join('  '))
}

async function main (argv: string[]): Promise<number> {
  const program = await buildProgram(argv)
  try {
    await program.parseAsync(argv)
    return 0
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0
      return 2
    }
    const e = err as Error
    let line: string
    let code = 1
    if (e instanceof UserError && e.name === 'ExitCode') return e.exitCode // exec: the command's own code, its stderr already shown
    // ConfigError by name: its module (zod, smol-toml) is loaded only by agent commands.
    if (e instanceof UserError) { line = e.message; code = e.exitCode } else if (e.name === 'ConfigError' || e instanceof AgentUnreachableError || e instanceof AgentRequestError || e instanceof ApiFileDamagedError) {
      line = e.message
    } else {
      line = `error: ${e.message}`
      if (process.env.BOLT_DEBUG !== undefined) process.stderr.write(`${e.stack ?? ''}\n`)
    }
    process.stderr.write(`bolt-agent: ${line.replace(/\n/g, ' ')}\n`)
    return code
  }
}

handleClosedStdout()
process.exitCode = await main(process.argv)
// Agent commands end after a clean stop; don't wait on stray handles.
setTimeout(() => process.exit(process.exitCode ?? 0), 200).unref()
