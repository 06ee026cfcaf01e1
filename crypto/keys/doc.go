// Package keys defines Moat's keys, each typed by its role, as specified in
// docs/spec/keys.md.
//
// Every key is its own Go type: a device's Ed25519 identity signing key
// cannot be passed where its X25519 identity DH key is expected, and a
// prekey cannot be passed as either. Key values are not comparable with ==
// (use Equal, which runs in constant time for private keys); they print
// without their secret bytes.
//
// Each public key has two encodings:
//
//   - a binary encoding, Bytes, which is one type tag byte followed by the
//     raw key (docs/spec/keys.md §Binary encoding); tags are pairwise
//     distinct, so no two key types share an encoding;
//   - a text encoding, String, which is a type prefix followed by the
//     unpadded base64url encoding of the raw key (§Text encoding).
//
// The Parse functions are strict: they reject another type's encoding,
// wrong lengths, non-canonical encodings, low-order X25519 and Ed25519
// points, and ML-KEM encapsulation keys that fail the FIPS 203 modulus check.
package keys
