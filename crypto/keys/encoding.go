package keys

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// Tag is the first byte of every binary key encoding (docs/spec/keys.md
// §Binary encoding). The values are pairwise distinct and never reused.
type Tag byte

const (
	TagIdentitySigning Tag = 0x01 // Ed25519 device identity signing key
	TagIdentityDH      Tag = 0x02 // X25519 device identity DH key
	TagSignedPrekey    Tag = 0x03 // X25519 signed prekey
	TagOneTimePrekey   Tag = 0x04 // X25519 one-time prekey
	TagKEMPrekey       Tag = 0x05 // ML-KEM-768 prekey (one-time or last-resort)
	TagRatchetDH       Tag = 0x06 // X25519 ratchet key
	TagRatchetKEM      Tag = 0x07 // ML-KEM-768 ratchet key
	TagEphemeralDH     Tag = 0x08 // X25519 PQXDH ephemeral key
	TagSealedSender    Tag = 0x09 // X-Wing (ML-KEM-768 + X25519) sealed-sender key
	TagOrgSigning      Tag = 0x10 // hybrid org CA key
	TagDirectorySign   Tag = 0x11 // hybrid key-directory key
	TagLogSigning      Tag = 0x12 // hybrid transparency-log key
	TagRelaySigning    Tag = 0x13 // Ed25519 relay key (signed mailbox heads)
)

// prefixes maps each tag to its text-encoding prefix (docs/spec/keys.md §Text
// encoding). A prefix ends in ':' and no prefix is a prefix of another.
var prefixes = map[Tag]string{
	TagIdentitySigning: "moat-idsig1:",
	TagIdentityDH:      "moat-iddh1:",
	TagSignedPrekey:    "moat-spk1:",
	TagOneTimePrekey:   "moat-opk1:",
	TagKEMPrekey:       "moat-kempk1:",
	TagRatchetDH:       "moat-rdh1:",
	TagRatchetKEM:      "moat-rkem1:",
	TagEphemeralDH:     "moat-eph1:",
	TagSealedSender:    "moat-ssk1:",
	TagOrgSigning:      "moat-org1:",
	TagDirectorySign:   "moat-dir1:",
	TagLogSigning:      "moat-log1:",
	TagRelaySigning:    "moat-relay1:",
}

func encodeBinary(t Tag, raw []byte) []byte {
	out := make([]byte, 1+len(raw))
	out[0] = byte(t)
	copy(out[1:], raw)
	return out
}

// decodeBinary checks the tag and the exact length, and returns the raw key.
func decodeBinary(t Tag, b []byte, rawLen int) ([]byte, error) {
	if len(b) == 0 {
		return nil, ErrMalformed
	}
	if Tag(b[0]) != t {
		if _, known := prefixes[Tag(b[0])]; known {
			return nil, ErrWrongType
		}
		return nil, ErrMalformed
	}
	if len(b) != 1+rawLen {
		return nil, ErrMalformed
	}
	return b[1:], nil
}

func encodeText(t Tag, raw []byte) string {
	return prefixes[t] + base64.RawURLEncoding.EncodeToString(raw)
}

func decodeText(t Tag, s string, rawLen int) ([]byte, error) {
	p := prefixes[t]
	if !strings.HasPrefix(s, p) {
		for _, other := range prefixes {
			if strings.HasPrefix(s, other) {
				return nil, ErrWrongType
			}
		}
		return nil, ErrMalformed
	}
	body := s[len(p):]
	// Size check before allocation; RawURLEncoding is strict about padding
	// and, with Strict, about non-zero trailing bits.
	if len(body) != base64.RawURLEncoding.EncodedLen(rawLen) {
		return nil, ErrMalformed
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil || len(raw) != rawLen {
		return nil, ErrMalformed
	}
	return raw, nil
}

// secret is embedded in every private key type. Its Format method is
// promoted, so that printing a private key with any verb never reveals key
// material (docs/spec/keys.md §Handling).
//
// fmt cannot call Format on a key stored by value in an unexported field of
// another struct; it then prints the key's fields, and prints a pointer field
// at that depth only as an address. So private key types hold their secret
// material only behind pointers, never in a slice or array field.
type secret struct{}

func (secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[secret key redacted]")) }

// noCompare makes a struct type incomparable, so that keys cannot be compared
// with == (which would not be constant time, and compares pointers).
type noCompare [0]func()
