// Package bundle implements Moat's prekey publication, as specified in
// docs/spec/bundle.md: the device-signed PrekeyUpload a device sends the
// relay (its signed prekey, one-time X25519 and ML-KEM prekeys, last-resort
// KEM prekey, sealed-sender key and MLS KeyPackages), which the relay
// checks with Upload.Verify, and the BundleResponse the relay serves, which
// the initiator checks with Open against the identity it verified in the
// key directory before it runs PQXDH and seals to the recipient.
//
// The package does no I/O.
package bundle
