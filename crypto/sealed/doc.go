// Package sealed implements Moat's sealed-sender envelope, as specified in
// docs/spec/envelope.md: a 1:1 ratchet message and its sender's identity,
// sealed with HPKE (X-Wing, HKDF-SHA256, ChaCha20-Poly1305) to the
// recipient device's sealed-sender key and padded to a power-of-two size
// bucket, so that the relay learns the recipient mailbox and the bucket but
// not the sender.
//
// A sender verifies the recipient's signed key record once (NewRecipient)
// and seals with Recipient.Seal. The relay reads only the header
// (ParseHeader). The recipient opens with Keyring.Open, and must then bind
// the sender named inside to the ratchet session it decrypts with
// (Opened.CheckPeer, docs/spec/envelope.md §Sender binding) before it
// touches that session: the envelope itself authenticates nobody.
//
// The package does no I/O and no compression (docs/spec/envelope.md §Size
// buckets, T35). HPKE draws its randomness from the Go runtime.
package sealed
