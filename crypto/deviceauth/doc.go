// Package deviceauth implements the device authentication of
// docs/spec/api.md §Device authentication: the relay issues a stateless,
// MAC-tagged challenge naming itself, the time and a purpose; the device
// signs it, with its tenant and device identifiers and the connection's
// channel binding, under its org-certified identity signing key; the relay
// checks the tag, its own name, the purpose, the lifetime, the signature
// under the device's current key, and that the challenge was not answered
// before. There are no passwords.
//
// The relay side is Verifier, the device side Respond. The package does no
// I/O: device keys and the replay cache are interfaces, with in-memory
// implementations, and deviceauthtest holds the replay cache's
// conformance suite.
package deviceauth
