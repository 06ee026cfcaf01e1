// Package relay is Moat's blind relay: the HTTP API v1 of docs/spec/api.md
// over the mailbox store (server/store/mailbox), the prekey store
// (server/store/prekey) and the device directory (DeviceDirectory).
//
// The relay stores and forwards sealed envelopes it cannot open
// (docs/spec/envelope.md). A device authenticates with a signed challenge
// (crypto/deviceauth) and gets a session for one purpose: its own mailbox
// (fetch, acknowledge, a WebSocket push channel), its prekeys
// (crypto/bundle uploads, verified under its certified identity key), or
// its delivery-token verifiers. A send is anonymous: it is authorised by a
// delivery token (crypto/deliverytoken) and rate-limited by that token, by
// the recipient mailbox and by network address, never by the sender's
// identity. Every mailbox page and send receipt carries a mailbox head
// signed with the relay's key, with which a device detects a relay rolled
// back to an old backup (T40).
//
// The package does no cryptography of its own: it calls crypto/deviceauth,
// crypto/deliverytoken, crypto/sealed and crypto/bundle. Client is the Go
// client of the API.
package relay
