// The nft table of a capsule bridge: DNAT of published ports (two maps the
// agents on this host fill, see bridge.ts), outbound NAT for the subnet,
// forwarding to and from the bridge, and the agent's DNS on the gateway
// open to capsules only. Re-running it resets the chains, keeps the maps.

/**
 * The agent's DNS for capsules listens on the bridge's address, on this
 * port: their resolv.conf names no port. Accepted from the bridge (and the
 * host itself), dropped from every other interface.
 */
export const BRIDGE_DNS_PORT = 53

/** The `nft -f` script that sets up (or resets) `table` for bridge `br`, its subnet and gateway address. */
export function bridgeTable (table: string, br: string, subnet: string, gateway: string): string {
  const t = `ip ${table}`
  return `
add table ${t}
add map ${t} tcp_ports { type inet_service : ipv4_addr . inet_service; }
add map ${t} udp_ports { type inet_service : ipv4_addr . inet_service; }
add chain ${t} pre { type nat hook prerouting priority dstnat; policy accept; }
add chain ${t} out { type nat hook output priority -100; policy accept; }
add chain ${t} post { type nat hook postrouting priority srcnat; policy accept; }
add chain ${t} forwarding { type filter hook forward priority filter; policy accept; }
add chain ${t} input { type filter hook input priority filter; policy accept; }
flush chain ${t} pre
flush chain ${t} out
flush chain ${t} post
flush chain ${t} forwarding
flush chain ${t} input
add rule ${t} pre fib daddr type local dnat ip to tcp dport map @tcp_ports
add rule ${t} pre fib daddr type local dnat ip to udp dport map @udp_ports
add rule ${t} out fib daddr type local dnat ip to tcp dport map @tcp_ports
add rule ${t} out fib daddr type local dnat ip to udp dport map @udp_ports
add rule ${t} post ip saddr ${subnet} oifname != "${br}" masquerade
add rule ${t} post oifname "${br}" ip saddr 127.0.0.0/8 masquerade
add rule ${t} post oifname "${br}" ct status dnat ip saddr ${subnet} masquerade
add rule ${t} forwarding iifname "${br}" accept
add rule ${t} forwarding oifname "${br}" ct state established,related accept
add rule ${t} forwarding oifname "${br}" ct status dnat accept
add rule ${t} input iifname "${br}" ip daddr ${gateway} meta l4proto { tcp, udp } th dport ${BRIDGE_DNS_PORT} accept
add rule ${t} input iifname != { "${br}", "lo" } ip daddr ${gateway} meta l4proto { tcp, udp } th dport ${BRIDGE_DNS_PORT} drop
`
}
