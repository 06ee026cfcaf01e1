package keys

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/subtle"
	"errors"
	"io"

	"github.com/moat-im/moat/crypto/internal/label"
	"github.com/moat-im/moat/internal/pqc"
)

// Hybrid signing keys (docs/spec/keys.md §Hybrid signing keys): an Ed25519
// key and an ML-DSA-65 key that sign the same role-labelled message. A
// hybrid signature verifies only if both halves verify, so it stands while
// either algorithm does.

const (
	hybridPublicSize = ed25519.PublicKeySize + pqc.MLDSA65PublicKeySize
	// HybridSignatureSize is the size of a hybrid signature: Ed25519 then ML-DSA-65.
	HybridSignatureSize = ed25519.SignatureSize + pqc.MLDSA65SignatureSize
	// HybridSeedSize is the size of a hybrid private key's seed: the
	// Ed25519 seed then the ML-DSA-65 seed ξ.
	HybridSeedSize = ed25519.SeedSize + pqc.MLDSASeedSize
)

type hybridRole interface {
	tag() Tag
	name() string
}

type (
	roleOrg       struct{}
	roleDirectory struct{}
	roleLog       struct{}
)

func (roleOrg) tag() Tag           { return TagOrgSigning }
func (roleOrg) name() string       { return "org" }
func (roleDirectory) tag() Tag     { return TagDirectorySign }
func (roleDirectory) name() string { return "directory" }
func (roleLog) tag() Tag           { return TagLogSigning }
func (roleLog) name() string       { return "log" }

type (
	// OrgPublicKey is an organisation's CA key.
	OrgPublicKey = hybridPublicOf[roleOrg]
	// OrgPrivateKey is the private half of OrgPublicKey.
	OrgPrivateKey = hybridPrivateOf[roleOrg]
	// DirectoryPublicKey is the key directory's signing key.
	DirectoryPublicKey = hybridPublicOf[roleDirectory]
	// DirectoryPrivateKey is the private half of DirectoryPublicKey.
	DirectoryPrivateKey = hybridPrivateOf[roleDirectory]
	// LogPublicKey is a transparency log's checkpoint signing key.
	LogPublicKey = hybridPublicOf[roleLog]
	// LogPrivateKey is the private half of LogPublicKey.
	LogPrivateKey = hybridPrivateOf[roleLog]
)

type hybridPublicOf[R hybridRole] struct {
	_   noCompare
	ed  ed25519.PublicKey
	pq  *pqc.MLDSA65PublicKey
	raw []byte
}

type hybridPrivateOf[R hybridRole] struct {
	_ noCompare
	secret
	ed   *ed25519.PrivateKey // pointers: see the note on secret in encoding.go
	pq   *pqc.MLDSA65PrivateKey
	seed *[HybridSeedSize]byte
	pub  hybridPublicOf[R]
}

func generateHybridOf[R hybridRole](rand io.Reader) (*hybridPrivateOf[R], error) {
	seed := make([]byte, HybridSeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, err
	}
	return newHybridPrivateOf[R](seed)
}

func newHybridPrivateOf[R hybridRole](seed []byte) (*hybridPrivateOf[R], error) {
	if len(seed) != HybridSeedSize {
		return nil, ErrMalformed
	}
	ed := ed25519.NewKeyFromSeed(seed[:ed25519.SeedSize])
	var xi [pqc.MLDSASeedSize]byte
	copy(xi[:], seed[ed25519.SeedSize:])
	pqPub, pq := pqc.NewMLDSA65Key(&xi)
	raw := make([]byte, 0, hybridPublicSize)
	raw = append(raw, ed.Public().(ed25519.PublicKey)...)
	raw = append(raw, pqPub.Bytes()...)
	return &hybridPrivateOf[R]{
		ed: &ed, pq: pq, seed: (*[HybridSeedSize]byte)(bytes.Clone(seed)),
		pub: hybridPublicOf[R]{ed: ed.Public().(ed25519.PublicKey), pq: pqPub, raw: raw},
	}, nil
}

func newHybridPublicOf[R hybridRole](raw []byte) (*hybridPublicOf[R], error) {
	if len(raw) != hybridPublicSize {
		return nil, ErrMalformed
	}
	if err := checkEd25519Point(raw[:ed25519.PublicKeySize]); err != nil {
		return nil, err
	}
	// Non-canonical ML-DSA encodings are rejected: the key must re-encode
	// to itself.
	pq, err := pqc.ParseMLDSA65PublicKey(raw[ed25519.PublicKeySize:])
	if errors.Is(err, pqc.ErrNonCanonical) {
		return nil, ErrNonCanonical
	}
	if err != nil {
		return nil, ErrMalformed
	}
	return &hybridPublicOf[R]{ed: append(ed25519.PublicKey(nil), raw[:ed25519.PublicKeySize]...), pq: pq, raw: append([]byte(nil), raw...)}, nil
}

func parseHybridOf[R hybridRole](b []byte) (*hybridPublicOf[R], error) {
	var r R
	raw, err := decodeBinary(r.tag(), b, hybridPublicSize)
	if err != nil {
		return nil, err
	}
	return newHybridPublicOf[R](raw)
}

// hybridMessage is the message both halves sign:
//
//	"moat/v1/hybrid-signature/" || role || 0x00 || msg
func hybridMessage[R hybridRole](msg []byte) []byte {
	var r R
	m := make([]byte, 0, len(label.HybridSignature)+len(r.name())+1+len(msg))
	m = append(m, label.HybridSignature...)
	m = append(m, r.name()...)
	m = append(m, 0)
	return append(m, msg...)
}

// Sign returns a hybrid signature of msg. The ML-DSA half is hedged
// (randomised, FIPS 204 §3.4); the Ed25519 half is deterministic.
func (k *hybridPrivateOf[R]) Sign(msg []byte) ([]byte, error) {
	m := hybridMessage[R](msg)
	sig := make([]byte, HybridSignatureSize)
	copy(sig, ed25519.Sign(*k.ed, m))
	err := k.pq.SignTo(m, nil, sig[ed25519.SignatureSize:])
	if err != nil {
		return nil, err
	}
	return sig, nil
}

// Public returns the public half.
func (k *hybridPrivateOf[R]) Public() *hybridPublicOf[R] { return &k.pub }

// Seed returns the private seed, for serialising into an encrypted store
// or a KMS. Callers must not log it.
func (k *hybridPrivateOf[R]) Seed() []byte { return append([]byte(nil), k.seed[:]...) }

// Verify checks both halves of sig over msg; both must verify.
func (k *hybridPublicOf[R]) Verify(msg, sig []byte) error {
	if len(sig) != HybridSignatureSize {
		return ErrBadSignature
	}
	m := hybridMessage[R](msg)
	edOK := ed25519.Verify(k.ed, m, sig[:ed25519.SignatureSize])
	pqOK := k.pq.Verify(m, nil, sig[ed25519.SignatureSize:])
	if !edOK || !pqOK {
		return ErrBadSignature
	}
	return nil
}

// Bytes returns the tagged binary encoding: tag || Ed25519 key || ML-DSA-65 key.
func (k *hybridPublicOf[R]) Bytes() []byte {
	var r R
	return encodeBinary(r.tag(), k.raw)
}

// String returns the text encoding.
func (k *hybridPublicOf[R]) String() string {
	var r R
	return encodeText(r.tag(), k.raw)
}

// Equal reports whether k and o are the same key.
func (k *hybridPublicOf[R]) Equal(o *hybridPublicOf[R]) bool {
	return subtle.ConstantTimeCompare(k.raw, o.raw) == 1
}

// GenerateOrgKey returns a new org CA key.
func GenerateOrgKey(rand io.Reader) (*OrgPrivateKey, error) { return generateHybridOf[roleOrg](rand) }

// NewOrgPrivateKey derives an org CA key from its seed.
func NewOrgPrivateKey(seed []byte) (*OrgPrivateKey, error) { return newHybridPrivateOf[roleOrg](seed) }

// ParseOrgPublicKey parses the tagged binary encoding.
func ParseOrgPublicKey(b []byte) (*OrgPublicKey, error) { return parseHybridOf[roleOrg](b) }

// GenerateDirectoryKey returns a new key-directory signing key.
func GenerateDirectoryKey(rand io.Reader) (*DirectoryPrivateKey, error) {
	return generateHybridOf[roleDirectory](rand)
}

// ParseDirectoryPublicKey parses the tagged binary encoding.
func ParseDirectoryPublicKey(b []byte) (*DirectoryPublicKey, error) {
	return parseHybridOf[roleDirectory](b)
}

// GenerateLogKey returns a new transparency-log signing key.
func GenerateLogKey(rand io.Reader) (*LogPrivateKey, error) { return generateHybridOf[roleLog](rand) }

// ParseLogPublicKey parses the tagged binary encoding.
func ParseLogPublicKey(b []byte) (*LogPublicKey, error) { return parseHybridOf[roleLog](b) }

// Ed25519Signer returns the Ed25519 half as a crypto.Signer, for formats
// that define their own signed message, such as the Ed25519 signature line
// of a C2SP signed note (docs/spec/keys.md §Hybrid signing keys). A message
// signed this way carries no role label: the format must separate domains.
func (k *hybridPrivateOf[R]) Ed25519Signer() crypto.Signer { return *k.ed }

// MLDSA65Signer returns the ML-DSA-65 half as a crypto.Signer (circl's
// Signer signs deterministically, with an empty context, and ignores its
// rand argument), for the same purpose as Ed25519Signer.
func (k *hybridPrivateOf[R]) MLDSA65Signer() crypto.Signer { return k.pq.Signer() }

// Ed25519 returns the Ed25519 half of the public key.
func (k *hybridPublicOf[R]) Ed25519() ed25519.PublicKey {
	return append(ed25519.PublicKey(nil), k.ed...)
}

// MLDSA65 returns the ML-DSA-65 half of the public key.
func (k *hybridPublicOf[R]) MLDSA65() *pqc.MLDSA65PublicKey { return k.pq }

func parseHybridTextOf[R hybridRole](s string) (*hybridPublicOf[R], error) {
	var r R
	raw, err := decodeText(r.tag(), s, hybridPublicSize)
	if err != nil {
		return nil, err
	}
	return newHybridPublicOf[R](raw)
}

// ParseOrgPublicKeyText parses the text encoding.
func ParseOrgPublicKeyText(s string) (*OrgPublicKey, error) { return parseHybridTextOf[roleOrg](s) }

// ParseDirectoryPublicKeyText parses the text encoding.
func ParseDirectoryPublicKeyText(s string) (*DirectoryPublicKey, error) {
	return parseHybridTextOf[roleDirectory](s)
}

// ParseLogPublicKeyText parses the text encoding.
func ParseLogPublicKeyText(s string) (*LogPublicKey, error) { return parseHybridTextOf[roleLog](s) }
