// Agent configuration: TOML checked by zod. Precedence is flags > file >
// defaults; a wrong key or value fails at start with the key's path and what
// was expected, never with a stack trace.
import { readFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { parse as parseToml } from 'smol-toml'
import { z } from 'zod'
import type { ReachabilityOptions } from '../p2p/reachability/options.js'
import { DEFAULT_MIRROR_DISK_QUOTA_BYTES } from './mirror/mirror-quota.js'

export class ConfigError extends Error {
  override name = 'ConfigError'
}

const Multiaddr = z.string().regex(/^\/(ip4|ip6|dns|dns4|dns6)\//, 'a multiaddr such as /ip4/0.0.0.0/udp/7946/quic-v1')
const HostName = z.string().regex(/^[A-Za-z0-9.-]{1,253}$|^[0-9a-fA-F:]{2,45}$/, 'a host name or IP address, without a port')
const RegistryHost = z.string().regex(/^[A-Za-z0-9.-]{1,253}(?::\d{1,5})?$|^\[[0-9a-fA-F:]{2,45}\](?::\d{1,5})?$/, 'a registry as host[:port]')
const HostPort = z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'HOST:PORT such as 127.0.0.1:0')

export const ConfigSchema = z.strictObject({
  /** This node's name in `status`; default: the host name. */
  name: z.string().min(1).max(64).optional(),
  /** Timing profile for gossip and probes: lan (memberlist LAN), wan, or edge (slow links, small machines). */
  profile: z.enum(['lan', 'wan', 'edge']).default('lan'),
  /** auto: a Raft voter while fewer than raft.voters exist, else a client. */
  role: z.enum(['auto', 'server', 'client']).default('auto'),
  listen: z.array(Multiaddr).max(16).default(['/ip4/0.0.0.0/udp/7946/quic-v1', '/ip4/0.0.0.0/tcp/7946']),
  /** Addresses to advertise instead of the listen addresses (e.g. behind port forwarding). */
  announce: z.array(Multiaddr).max(16).default([]),
  log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  /** Find members on the local network with mDNS (`join --token T` without an address) and answer such searches. */
  mdns: z.boolean().default(true),
  labels: z.record(z.string().regex(/^[A-Za-z0-9_.\-/]{1,63}$/, 'label keys are letters, digits, _ . - /'), z.string().max(256)).default({}),
  api: z.strictObject({
    /** The local HTTP API; loopback with a bearer token (written to DATA/api.json). Port 0 picks a free one. */
    listen: HostPort.default('127.0.0.1:0'),
    /** Serve the API on a non-loopback address (every route but /metrics still needs the token). */
    allow_remote: z.boolean().default(false),
    /** `Host` names the API answers to besides loopback names and its own address (others get 421: DNS rebinding). */
    allowed_hosts: z.array(HostName).max(64).default([])
  }).prefault({}),
  debug: z.strictObject({
    /** Register the fault hooks (/v1/debug/partition, /v1/debug/drop-rate) that tests and scenarios use. */
    enabled: z.boolean().default(false)
  }).prefault({}),
  raft: z.strictObject({
    /** How many servers vote; autopilot keeps this many. Odd numbers tolerate (n-1)/2 failures. */
    voters: z.number().int().min(1).max(7).default(3),
    /** Followers start an election after this long without a leader (randomized up to 2×). */
    election_timeout_ms: z.number().int().min(100).max(60_000).default(1000),
    heartbeat_ms: z.number().int().min(10).max(10_000).default(100),
    /** Autopilot replaces a voter that gossip has marked dead for this long. */
    dead_voter_grace_ms: z.number().int().min(1000).default(30_000)
  }).prefault({}),
  membership: z.strictObject({
    /** Overrides of the profile's numbers (ms); absent: the profile's. */
    probe_interval_ms: z.number().int().min(50).optional(),
    probe_timeout_ms: z.number().int().min(10).optional(),
    suspicion_mult: z.number().int().min(1).max(20).optional(),
    push_pull_interval_ms: z.number().int().min(0).optional(),
    gossip_interval_ms: z.number().int().min(10).optional()
  }).prefault({}),
  content: z.strictObject({
    piece_size: z.number().int().min(64 * 1024).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
    /** Concurrent piece uploads to peers; absent: 8, or 0 with profile = "edge" (download-only). See uploadSlots(). */
    upload_slots: z.number().int().min(0).max(256).optional(),
    /** Blob store quota in bytes; 0 means no quota. Unreferenced blobs are evicted LRU above it. */
    disk_quota_bytes: z.number().int().min(0).default(0),
    /** Registries reached over plain HTTP besides loopback ones. */
    insecure_registries: z.array(z.string()).default([])
  }).prefault({}),
  relay: z.strictObject({
    /** Run a circuit relay v2 service for NATed members (server agents only; never with profile = "edge"). */
    service: z.boolean().default(true),
    /** Reservations this agent holds for NATed members at once. */
    max_reservations: z.number().int().min(0).max(1024).default(64),
    reservation_ttl_ms: z.number().int().min(10_000).max(24 * 3600_000).default(3600_000),
    /** Per relayed connection; 0 = none. Limited connections carry only protocols marked for them. */
    duration_limit_ms: z.number().int().min(0).default(0),
    data_limit_bytes: z.number().int().min(0).default(0),
    /** Hold a slot on a member's relay: auto = when no interface has a public address. */
    reserve: z.enum(['auto', 'always', 'never']).default('auto')
  }).prefault({}),
  nat: z.strictObject({
    /**
     * libp2p's AutoNAT v1: ask members to dial back our public addresses. Off:
     * its server answers over the asker's existing connection and then closes
     * it (@libp2p/autonat 3.0), cutting fresh connections between agents with
     * public addresses (see cluster.example.toml).
     */
    autonat: z.boolean().default(false),
    /** Upgrade relayed connections to direct ones by hole punching (DCUtR). */
    hole_punching: z.boolean().default(true)
  }).prefault({}),
  edge: z.strictObject({
    /**
     * With profile = "edge": restart the process in place (same pid) with V8
     * and allocator limits for small machines (agent/edge-runtime.ts).
     */
    tune_runtime: z.boolean().default(true)
  }).prefault({}),
  websockets: z.strictObject({
    /** WebSockets listen addresses for browser clients, e.g. /ip4/0.0.0.0/tcp/7947/ws; empty = off. Admission applies. */
    listen: z.array(Multiaddr.regex(/\/wss?$/, 'a WebSockets multiaddr ending in /ws')).max(4).default([])
  }).prefault({}),
  mirror: z.strictObject({
    enabled: z.boolean().default(true),
    listen: HostPort.default('127.0.0.1:5050'),
    upstream: z.string().default('registry-1.docker.io'),
    /** Serve tags from the cluster's last resolution when the upstream is down. */
    serve_stale_tags: z.boolean().default(true),
    /** Serve the mirror on a non-loopback address (anyone who reaches it can pull through this node). */
    allow_remote: z.boolean().default(false),
    /** Registries (host[:port]) containerd's `ns=` may name; absent: Docker Hub. The upstream is always one. */
    registries: z.array(RegistryHost).max(256).optional(),
    /**
     * Hosts (`host:port`, `host` for any port, or "*") the mirror may fetch
     * from although they are on loopback, private or link-local addresses
     * (an upstream, a redirect target, a token realm). Empty: none — a
     * registry on this machine or your LAN must be listed here.
     */
    allow_private_hosts: z.array(z.string().regex(/^\*$|^[A-Za-z0-9.-]{1,253}(?::\d{1,5})?$|^\[[0-9a-fA-F:]{2,45}\](?::\d{1,5})?$/, 'host[:port] or "*"')).max(256).default([]),
    /** `Host` names the mirror answers to besides loopback names and its own address (others get 421). */
    allowed_hosts: z.array(HostName).max(64).default([]),
    /** Bytes of blobs no capsule or object pins that the mirror keeps (LRU eviction above it, 507 when a blob cannot fit); 0 = no quota. */
    disk_quota_bytes: z.number().int().min(0).default(DEFAULT_MIRROR_DISK_QUOTA_BYTES),
    /**
     * Repositories (`registry/repository`, or `registry/prefix/*`) for which
     * the mirror sends this node's registry credentials (config or
     * ~/.docker/config.json); others are fetched anonymously.
     */
    credential_repositories: z.array(z.string().regex(/^[a-z0-9.-]+(?::\d{1,5})?\/[a-z0-9._/-]*(?:\*)?$/, 'registry/repository or registry/prefix/*')).max(256).default([]),
    /**
     * When a client gets an image manifest, start pulling all its blobs at
     * once (clients like skopeo ask for them one by one; pulls started
     * together across nodes split the upstream between them).
     */
    prefetch: z.boolean().default(true)
  }).prefault({}),
  registry: z.strictObject({
    /** Accept OCI pushes on the mirror's listener (cluster images, `bolt.local/…`; agent/registry/). */
    enabled: z.boolean().default(true),
    /** Members that hold a pushed image's blobs before the push is acknowledged (the pushed-to one included). */
    replicas: z.number().int().min(1).max(16).default(2),
    /** Seconds a blob no cluster manifest names any more is kept before members remove it. */
    gc_grace_s: z.number().int().min(0).max(30 * 24 * 3600).default(3600)
  }).prefault({}),
  dns: z.strictObject({
    /** Answer NAME.service.bolt from the service catalog and forward other names. */
    enabled: z.boolean().default(true),
    /** UDP and TCP; a taken address is a warning (DNS off), not a failed start. Port 0 picks a free one. */
    listen: HostPort.default('127.0.0.1:8600'),
    /** Resolvers for names outside .bolt (IP or IP:PORT); absent: the nameservers of /etc/resolv.conf. */
    upstream: z.array(z.string().regex(/^[0-9.]+(:\d{1,5})?$|^\[[0-9a-fA-F:]+\](:\d{1,5})?$|^[0-9a-fA-F:]+$/, 'an IP address, optionally :PORT')).max(8).optional()
  }).prefault({}),
  network: z.strictObject({
    /**
     * This node's capsule subnet (bridge mode), e.g. "10.88.3.0/24". "auto":
     * a /24 of 10.88.0.0/16 no other member has announced, kept in
     * DATA/network.json. Members gossip theirs; an overlap is refused.
     */
    subnet: z.union([z.literal('auto'), z.string().regex(/^\d+\.\d+\.\d+\.\d+\/\d{1,2}$/, 'an IPv4 subnet such as 10.88.3.0/24, or "auto"')]).default('auto'),
    /** The bridge capsules attach to (an interface name, at most 15 characters). */
    bridge: z.string().regex(/^[a-zA-Z0-9_.-]{1,15}$/, 'an interface name: letters, digits, _ . -, at most 15').default('bolt0'),
    /** Host ports given to `-p CONTAINER` (dynamic); static ports may be anywhere in 1-65535. */
    port_range: z.tuple([z.number().int().min(1).max(65535), z.number().int().min(1).max(65535)])
      .refine(([lo, hi]) => lo <= hi, 'port_range is [low, high] with low <= high').default([20000, 32767])
  }).prefault({}),
  runtime: z.strictObject({
    /** runc, crun, or auto (runc if installed, else crun: native/oci/driver.ts detectRuntimes). */
    oci_runtime: z.enum(['auto', 'runc', 'crun']).default('auto')
  }).prefault({}),
  capsules: z.strictObject({
    /**
     * Run capsules that ask for `network = "host"` here. They share the
     * node's network stack (its loopback and the API on it): only for
     * workloads you trust like the agent itself. Gossiped; the scheduler
     * places such capsules only on nodes that allow them.
     */
    allow_host_network: z.boolean().default(false),
    /**
     * Host directories capsules may mount (`run -v HOST:CONTAINER`): a path
     * outside them is refused at start with the reason. Empty: none.
     */
    volume_roots: z.array(z.string().startsWith('/', 'an absolute path')).max(64).default([]),
    /**
     * Run `gaming` capsules here: they get the node's input devices (a
     * keylogger's and keystroke injector's reach), sound devices and the
     * display/audio sockets. Only on a machine set aside for games.
     */
    allow_gaming: z.boolean().default(false)
  }).prefault({}),
  s3: z.strictObject({
    /** Serve the S3 API (agent/s3/); a taken port is a warning (S3 off), not a failed start. */
    enabled: z.boolean().default(true),
    listen: HostPort.default('127.0.0.1:9000'),
    /** Serve S3 on a non-loopback address (every request still needs a key's signature). */
    allow_remote: z.boolean().default(false),
    /** `Host` names the endpoint answers to besides loopback names and its own address (others get 421). */
    allowed_hosts: z.array(HostName).max(64).default([]),
    /** Virtual-host-style requests: `BUCKET.DOMAIN` in `Host` names the bucket (e.g. "s3.localhost"); absent: path style only. */
    domain: HostName.optional(),
    /** What GetBucketLocation answers; clients may sign with any region. */
    region: z.string().regex(/^[a-z0-9-]{1,32}$/).default('us-east-1'),
    /** Peer copies of each object of a new bucket, besides the agent's own. */
    replicas: z.number().int().min(0).max(16).default(2),
    /** Largest single PUT and largest part (S3: 5 GiB); larger bodies get EntityTooLarge. */
    max_put_bytes: z.number().int().min(1).default(5 * 1024 * 1024 * 1024),
    /** A holder dead this long has its objects copied again from the survivors (by the Raft leader) until each has its replicas. */
    repair_grace_ms: z.number().int().min(1000).default(60_000),
    /** How often deleted objects' blobs are freed (an object released at least this long ago that nothing names). */
    collect_delay_ms: z.number().int().min(100).default(30_000)
  }).prefault({}),
  objects: z.strictObject({
    /**
     * The API's `object get` with a `dest` writes (as the agent's user, root)
     * only under this directory; absent: never. `bolt-agent object get ID
     * DEST` needs none of this: the agent streams the bytes and the CLI
     * writes DEST as the user who runs it.
     */
    dest_root: z.string().startsWith('/', 'an absolute directory path').optional()
  }).prefault({})
})

export type Config = z.infer<typeof ConfigSchema>

export function formatZodIssue (issue: z.core.$ZodIssue): string {
  const path = issue.path.length > 0 ? issue.path.join('.') : '(top level)'
  if (issue.code === 'unrecognized_keys') {
    const keys = (issue as { keys: string[] }).keys
    const where = issue.path.length > 0 ? `${path}.` : ''
    return `unknown key ${keys.map(k => where + k).join(', ')} (see cluster.example.toml for the keys)`
  }
  return `${path}: ${issue.message}`
}

/** Parses and checks a config; `flags` win over the file. */
export function parseConfig (fileText: string | undefined, source: string, flags: Partial<Record<string, unknown>> = {}): Config {
  let raw: Record<string, unknown> = {}
  if (fileText !== undefined) {
    try {
      raw = parseToml(fileText) as Record<string, unknown>
    } catch (err) {
      const first = (err as Error).message.split('\n')[0] ?? 'parse error'
      throw new ConfigError(`config error: ${source} is not valid TOML: ${first}`)
    }
  }
  const merged = mergeDeep(raw, stripUndefined(flags))
  const parsed = ConfigSchema.safeParse(merged)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new ConfigError(`config error: ${source}: ${issue === undefined ? 'invalid' : formatZodIssue(issue)}`)
  }
  return parsed.data
}

export async function loadConfig (file: string | undefined, flags: Partial<Record<string, unknown>> = {}): Promise<Config> {
  if (file === undefined) return parseConfig(undefined, 'flags', flags)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new ConfigError(`config error: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  return parseConfig(text, file, flags)
}

// Lives with the data-dir guards, which the CLI's client commands load without zod.
export { defaultDataDir } from './data-dir.js'

/** Piece upload slots: configured, else none on an edge node (download-only), else 8. */
export const DEFAULT_UPLOAD_SLOTS = 8
export function uploadSlots (config: Config): number {
  return config.content.upload_slots ?? (config.profile === 'edge' ? 0 : DEFAULT_UPLOAD_SLOTS)
}

/**
 * The node's reachability from its config: the relay service runs on servers
 * only and never on an edge agent (small machine, slow link); edge agents
 * still hold a slot, verify addresses and punch holes.
 */
export function reachabilityOptions (config: Config, role: 'server' | 'client'): ReachabilityOptions {
  const r = config.relay
  const serve = r.service && role === 'server' && config.profile !== 'edge'
  return {
    ...(serve ? { relayService: { maxReservations: r.max_reservations, reservationTtlMs: r.reservation_ttl_ms, durationLimitMs: r.duration_limit_ms, dataLimitBytes: r.data_limit_bytes } } : {}),
    reserve: r.reserve,
    autonat: config.nat.autonat,
    holePunching: config.nat.hole_punching
  }
}

/** DHT server mode (answer queries, store records): servers that are not edge agents. */
export function dhtServerMode (config: Config, role: 'server' | 'client'): boolean {
  return role === 'server' && config.profile !== 'edge'
}

export function nodeName (config: Config): string {
  return config.name ?? hostname()
}

function stripUndefined (o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined) continue
    out[k] = v !== null && typeof v === 'object' && !Array.isArray(v) ? stripUndefined(v as Record<string, unknown>) : v
  }
  return out
}

function mergeDeep (base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(over)) {
    const b = out[k]
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && b !== null && typeof b === 'object' && !Array.isArray(b)) {
      out[k] = mergeDeep(b as Record<string, unknown>, v as Record<string, unknown>)
    } else {
      out[k] = v
    }
  }
  return out
}
