// Package gossip runs Quarry's serf gossip cluster: membership and failure
// detection for rigs and controllers, tag publishing, keyring rotation, and
// signed fleet events and queries.
//
// Gossip is always encrypted (AES-GCM keyring), but holding the gossip key
// only proves a node belongs to the fleet, not that it may command it.
// Anything that makes an agent act (fleet events, queries) is therefore
// additionally signed with the controller's ed25519 key and checked for
// freshness and replay before a handler sees it. For the same reason no
// node accepts keyring changes over gossip (serf's key queries are undone),
// and a member's identity counts only when signed with its certificate key
// (see TagSig and VerifyMember).
package gossip
