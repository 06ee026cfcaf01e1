package ratchet

import "time"

// Bounds of docs/spec/ratchet.md §Bounds. Input past a bound is rejected
// before any key derivation.
const (
	// MaxChainMessages is the most messages a chain may carry. A sender
	// begins a new chain after this many, so with KEMInterval it bounds
	// how many messages separate two KEM steps.
	MaxChainMessages = 50
	// MaxSkip is the most message keys one message may make the receiver
	// derive in one chain (Signal Double Ratchet §3.2 MAX_SKIP). Chains are
	// at most MaxChainMessages long, so a message number past it is
	// rejected before any derivation, and MaxSkip equals it.
	MaxSkip = MaxChainMessages
	// KEMInterval is the most messages a sender sends before it mixes a
	// fresh ML-KEM-768 secret into its root (§KEM ratchet).
	KEMInterval = 50
	// KEMMaxAge is the longest a sender goes before a fresh KEM secret,
	// and the longest any chain is used for sending.
	KEMMaxAge = 24 * time.Hour
	// MaxSkippedKeys is the most skipped message keys stored, all chains
	// together; past it the oldest are evicted and reported as expired.
	MaxSkippedKeys = 2000
	// SkippedKeyLifetime is how long a skipped message key is kept.
	SkippedKeyLifetime = 7 * 24 * time.Hour
	// MaxReceiveChains is the most receiving chains (and their roots) kept.
	MaxReceiveChains = 16
	// MaxUnackedChains is the most of its own chains a sender keeps roots
	// for while it waits for the peer to acknowledge one.
	MaxUnackedChains = 16
	// MaxOwnDHKeys and MaxOwnKEMKeys are how many of its own ratchet
	// private keys a party keeps for peers' chains that may still name
	// them; older ones are deleted (forward secrecy).
	MaxOwnDHKeys  = 16
	MaxOwnKEMKeys = 4
	// MaxPlaintextSize is the largest plaintext; larger content travels as
	// an encrypted attachment.
	MaxPlaintextSize = 256 << 10
	// MaxPreambleSize is the largest PQXDH preamble a header may carry.
	MaxPreambleSize = 4096
	// maxTombstones bounds the record of evicted skipped keys that lets a
	// late message be reported as expired rather than as a duplicate.
	maxTombstones = 2 * MaxSkippedKeys
	// restoreJump is the range of the random jump in chain index a restored
	// session makes, so that its fresh chain does not reuse an index the
	// peer may already hold from the lost state.
	restoreJump = 1 << 20
)
