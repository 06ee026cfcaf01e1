package org

// Encoding helpers shared by every format of docs/spec/org.md §Encoding
// rules: fixed-size identifiers, uint64 times, uint8-length text, tagged
// keys parsed by crypto/keys, and the CA-signed envelope body || signature.

import (
	"bytes"
	"errors"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

// Tagged key sizes.
const (
	ed25519Tagged = 1 + 32
	x25519Tagged  = 1 + 32
	hybridTagged  = 1 + 32 + 1952
	// SignatureSize is the size of an org CA signature (docs/spec/keys.md
	// §Hybrid signing keys).
	SignatureSize = keys.HybridSignatureSize
	ed25519SigLen = 64
)

var errEncode = errors.New("org: value cannot be encoded")

func addID(b *cryptobyte.Builder, id []byte) { b.AddBytes(id) }

func readID(s *cryptobyte.String, out *[16]byte) bool { return s.CopyBytes(out[:]) }

func addTime(b *cryptobyte.Builder, t time.Time) {
	if !validTime(t) {
		b.SetError(errEncode)
		return
	}
	b.AddUint64(uint64(t.Unix()))
}

func readTime(s *cryptobyte.String, out *time.Time) bool {
	var v uint64
	if !s.ReadUint64(&v) || v > maxUnix {
		return false
	}
	*out = time.Unix(int64(v), 0).UTC()
	return true
}

// addText writes opaque text<1..255>.
func addText(b *cryptobyte.Builder, s string) {
	if !validText(s) {
		b.SetError(errEncode)
		return
	}
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
}

func readText(s *cryptobyte.String, out *string) bool {
	var v cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&v) || !validText(string(v)) {
		return false
	}
	*out = string(v)
	return true
}

// addOptText writes opaque text<0..255>, empty for none.
func addOptText(b *cryptobyte.Builder, s string) {
	if s != "" && !validText(s) {
		b.SetError(errEncode)
		return
	}
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
}

func readOptText(s *cryptobyte.String, out *string) bool {
	var v cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&v) || (len(v) > 0 && !validText(string(v))) {
		return false
	}
	*out = string(v)
	return true
}

func addBool(b *cryptobyte.Builder, v bool) {
	if v {
		b.AddUint8(1)
	} else {
		b.AddUint8(0)
	}
}

func readBool(s *cryptobyte.String, out *bool) bool {
	var v uint8
	if !s.ReadUint8(&v) || v > 1 {
		return false
	}
	*out = v == 1
	return true
}

// addKey writes the tagged encoding of a key, failing the builder on nil.
func addKey(b *cryptobyte.Builder, k interface{ Bytes() []byte }, isNil bool) {
	if isNil {
		b.SetError(errEncode)
		return
	}
	b.AddBytes(k.Bytes())
}

func readIdentity(s *cryptobyte.String, out *keys.DeviceIdentity) error {
	var sig, dh []byte
	if !s.ReadBytes(&sig, ed25519Tagged) || !s.ReadBytes(&dh, x25519Tagged) {
		return ErrMalformed
	}
	sk, err := keys.ParseIdentitySigningPublicKey(sig)
	if err != nil {
		return &KeyError{err}
	}
	dk, err := keys.ParseIdentityDHPublicKey(dh)
	if err != nil {
		return &KeyError{err}
	}
	*out = keys.DeviceIdentity{Signing: sk, DH: dk}
	return nil
}

func addIdentity(b *cryptobyte.Builder, id keys.DeviceIdentity) {
	if id.Signing == nil || id.DH == nil {
		b.SetError(errEncode)
		return
	}
	b.AddBytes(id.Signing.Bytes())
	b.AddBytes(id.DH.Bytes())
}

func readOrgKey(s *cryptobyte.String) (*keys.OrgPublicKey, error) {
	var raw []byte
	if !s.ReadBytes(&raw, hybridTagged) {
		return nil, ErrMalformed
	}
	k, err := keys.ParseOrgPublicKey(raw)
	if err != nil {
		return nil, &KeyError{err}
	}
	return k, nil
}

// build runs f on a fresh builder and maps any builder error to errEncode.
func build(f func(b *cryptobyte.Builder)) ([]byte, error) {
	var b cryptobyte.Builder
	f(&b)
	out, err := b.Bytes()
	if err != nil {
		return nil, errEncode
	}
	return out, nil
}

// splitSigned splits a CA-signed encoding, body || signature[3373].
func splitSigned(data []byte) (body, sig []byte, ok bool) {
	if len(data) <= SignatureSize {
		return nil, nil, false
	}
	n := len(data) - SignatureSize
	return data[:n], data[n:], true
}

// joinSigned returns body || sig, refusing a signature of the wrong size.
func joinSigned(body, sig []byte) ([]byte, error) {
	if len(sig) != SignatureSize {
		return nil, errEncode
	}
	out := make([]byte, 0, len(body)+len(sig))
	return append(append(out, body...), sig...), nil
}

// verifyCA checks sig, a hybrid org signature, over label || 0x00 || body.
func verifyCA(ca *keys.OrgPublicKey, label string, body, sig []byte) error {
	if ca == nil || ca.Verify(labelled(label, body), sig) != nil {
		return ErrBadSignature
	}
	return nil
}

// parseErr normalises a decoding failure: a *KeyError stays, anything else
// becomes ErrMalformed, wrapped with what was being parsed.
func parseErr(what string, err error) error {
	var ke *KeyError
	if errors.As(err, &ke) {
		return &KeyError{Err: ke.Err}
	}
	if errors.Is(err, ErrWitnessQuorum) {
		return &parseError{what: what, cause: ErrWitnessQuorum}
	}
	return &parseError{what: what}
}

// parseError is ErrMalformed, and cause if set (ErrWitnessQuorum: the
// encoding is well formed but its witness quorum is refused).
type parseError struct {
	what  string
	cause error
}

func (e *parseError) Error() string {
	if e.cause != nil {
		return "org: parsing " + e.what + ": " + e.cause.Error()
	}
	return "org: parsing " + e.what + ": malformed encoding"
}

func (e *parseError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrMalformed, e.cause}
	}
	return []error{ErrMalformed}
}

func clone(b []byte) []byte { return bytes.Clone(b) }

// keyID is SHA-256 of the tagged encoding of an org CA key: the issuer id
// carried in certificates (docs/spec/org.md §Device certificates).
func keyID(k *keys.OrgPublicKey) [32]byte { return sha256Sum(k.Bytes()) }
