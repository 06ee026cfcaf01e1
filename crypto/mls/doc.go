// Package mls implements the Messaging Layer Security protocol as specified
// in [RFC 9420], with Moat's profile (docs/spec/mls-profile.md): every
// RFC 9420 cipher suite and the post-quantum suite
// MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519 (0x004D), Moat's default
// ([DefaultCipherSuite]).
//
// A [Group] is one member's state of a group. It is created with
// [NewGroup], [Join] (from a Welcome) or [ExternalJoin] (from a published
// GroupInfo), and advanced only by Commits:
//
//   - Propose* frame one proposal; [Group.Process] caches a received one
//     only if it is valid on its own (§12.1); [Group.Commit] covers the
//     cached proposals that form a valid list (§12.2) and any given
//     inline, and returns the Commit and the Welcome for new members;
//     [Group.DiscardProposals] empties the cache. The group moves to the next epoch when the
//     delivery service echoes the Commit back to [Group.Process] (or on
//     [Group.MergePendingCommit]).
//   - [Group.Process] accepts proposals, Commits and application messages
//     from the group; [Group.Encrypt] and [Group.Decrypt] send and receive
//     application data.
//   - [Group.EpochAuthenticator] and [Group.Export] expose the epoch's
//     authenticator and exporter (§8.5, §8.7).
//
// The package does no I/O. Every method that takes a message checks it
// completely before it changes anything: on error the Group is unchanged,
// secret tree included. Credentials are validated by the application's
// [CredentialValidator]; further rules (who may add or remove members) are
// the application's [Policy].
//
// The wire structures (wire_*.go) are parsed strictly and size-bounded;
// the key schedule, secret tree and cipher suites live in internal
// packages.
//
// [RFC 9420]: https://www.rfc-editor.org/rfc/rfc9420.html
package mls
