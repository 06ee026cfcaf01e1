// Package pqxdh implements the PQXDH key agreement as specified in Signal's
// "The PQXDH Key Agreement Protocol" (revision 3), in the Moat profile of
// docs/spec/pqxdh.md: curve X25519, hash SHA-256, pqkem ML-KEM-768, separate
// Ed25519 and X25519 identity keys, type-tagged encodings, and a transcript
// hash as the HKDF salt.
//
// The package does no I/O. An initiator calls Initiate with a peer's
// Bundle; a responder looks up the private prekeys an InitialMessage names
// (Prekeys does that for an in-memory set) and calls Respond. Both get the
// same Result, whose SharedKey seeds crypto/ratchet.
//
// A bundle without a signed ML-KEM prekey is an error, never a classical
// fallback (docs/spec/pqxdh.md §Bundle checks).
package pqxdh
