// Reachability for agents behind NAT: relay service and slot, AutoNAT, DCUtR,
// and which addresses to gossip.
export * from './options.js'
export * from './services.js'
export * from './addresses.js'
export * from './relay-slot.js'
