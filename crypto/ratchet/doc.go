// Package ratchet implements Moat's post-quantum Double Ratchet, as
// specified in docs/spec/ratchet.md: the Double Ratchet of Signal's
// specification (revision 4) with per-direction root chains, so that a
// sender can begin a new chain alone, and an ML-KEM-768 ratchet step mixed
// into the root at least every 50 messages or 24 hours.
//
// A Session is created from a PQXDH result (crypto/pqxdh) with
// NewInitiator or NewResponder. Encrypt and Decrypt are the only operations
// that change it; each commits its state only after it has fully succeeded,
// so a rejected message leaves the session byte-identical. Marshal and
// Unmarshal serialise a session with a monotonic generation counter, so
// that a store rolled back to an old snapshot is detected, and a restored
// session always begins a fresh chain before it sends, so that no message
// key is ever used twice.
//
// The package does no I/O: randomness and time come in through Config. A
// Session is not safe for concurrent use.
package ratchet
