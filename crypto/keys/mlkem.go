package keys

import (
	"bytes"
	"crypto/subtle"
	"io"

	"github.com/moat-im/moat/internal/pqc"
)

// ML-KEM-768 keys (docs/spec/keys.md §ML-KEM keys). The implementation is
// circl's through internal/pqc, which measures 3–4× faster than
// crypto/mlkem on the reference machine (docs/performance.md) and performs
// the FIPS 203 §7.2 modulus check on encapsulation keys.

const (
	// KEMPublicKeySize is the size of an ML-KEM-768 encapsulation key.
	KEMPublicKeySize = pqc.MLKEM768PublicKeySize
	// KEMCiphertextSize is the size of an ML-KEM-768 ciphertext.
	KEMCiphertextSize = pqc.MLKEM768CiphertextSize
	// KEMSharedSecretSize is the size of an ML-KEM shared secret.
	KEMSharedSecretSize = pqc.MLKEM768SharedSecretSize
	// KEMSeedSize is the size of the (d, z) seed of a decapsulation key.
	KEMSeedSize = pqc.MLKEM768SeedSize
)

type kemRole interface{ tag() Tag }

type (
	roleKEMPrekey  struct{}
	roleRatchetKEM struct{}
)

func (roleKEMPrekey) tag() Tag  { return TagKEMPrekey }
func (roleRatchetKEM) tag() Tag { return TagRatchetKEM }

type (
	// KEMPrekeyPublicKey is the ML-KEM-768 encapsulation key inside a
	// KEMPrekey (docs/spec/keys.md §KEM prekeys).
	KEMPrekeyPublicKey = kemPublicOf[roleKEMPrekey]
	// KEMPrekeyPrivateKey is the private half of KEMPrekeyPublicKey.
	KEMPrekeyPrivateKey = kemPrivateOf[roleKEMPrekey]
	// RatchetKEMPublicKey is an ML-KEM-768 key a party advertises for its
	// peer's KEM ratchet steps (docs/spec/ratchet.md §KEM ratchet).
	RatchetKEMPublicKey = kemPublicOf[roleRatchetKEM]
	// RatchetKEMPrivateKey is the private half of RatchetKEMPublicKey.
	RatchetKEMPrivateKey = kemPrivateOf[roleRatchetKEM]
)

type kemPublicOf[R kemRole] struct {
	_   noCompare
	k   *pqc.MLKEM768PublicKey
	raw []byte
}

type kemPrivateOf[R kemRole] struct {
	_ noCompare
	secret
	k    *pqc.MLKEM768PrivateKey
	seed *[KEMSeedSize]byte // a pointer: see the note on secret in encoding.go
	pub  kemPublicOf[R]
}

func generateKEMOf[R kemRole](rand io.Reader) (*kemPrivateOf[R], error) {
	seed := make([]byte, KEMSeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, err
	}
	return newKEMPrivateOf[R](seed)
}

// newKEMPrivateOf derives the key pair of a 64-byte (d, z) seed
// (FIPS 203 ML-KEM.KeyGen_internal).
func newKEMPrivateOf[R kemRole](seed []byte) (*kemPrivateOf[R], error) {
	if len(seed) != KEMSeedSize {
		return nil, ErrMalformed
	}
	pk, sk := pqc.NewMLKEM768Key(seed)
	raw := pk.Bytes()
	return &kemPrivateOf[R]{k: sk, seed: (*[KEMSeedSize]byte)(bytes.Clone(seed)), pub: kemPublicOf[R]{k: pk, raw: raw}}, nil
}

func newKEMPublicOf[R kemRole](raw []byte) (*kemPublicOf[R], error) {
	if len(raw) != KEMPublicKeySize {
		return nil, ErrMalformed
	}
	pk, err := pqc.ParseMLKEM768PublicKey(raw)
	if err != nil {
		return nil, ErrInvalidKEMKey
	}
	return &kemPublicOf[R]{k: pk, raw: append([]byte(nil), raw...)}, nil
}

func parseKEMOf[R kemRole](b []byte) (*kemPublicOf[R], error) {
	var r R
	raw, err := decodeBinary(r.tag(), b, KEMPublicKeySize)
	if err != nil {
		return nil, err
	}
	return newKEMPublicOf[R](raw)
}

// Public returns the public half.
func (k *kemPrivateOf[R]) Public() *kemPublicOf[R] { return &k.pub }

// Seed returns the 64-byte (d, z) seed, for serialising into an encrypted
// store. Callers must not log it.
func (k *kemPrivateOf[R]) Seed() []byte { return append([]byte(nil), k.seed[:]...) }

// Equal reports in constant time whether k and o are the same key.
func (k *kemPrivateOf[R]) Equal(o *kemPrivateOf[R]) bool {
	return subtle.ConstantTimeCompare(k.seed[:], o.seed[:]) == 1
}

// Decapsulate returns the shared secret of ct. A ciphertext of the wrong
// length is ErrMalformed; any other ciphertext yields a secret (FIPS 203
// implicit rejection), never a panic or a distinguishing error.
func (k *kemPrivateOf[R]) Decapsulate(ct []byte) ([]byte, error) {
	if len(ct) != KEMCiphertextSize {
		return nil, ErrMalformed
	}
	ss := make([]byte, KEMSharedSecretSize)
	k.k.DecapsulateTo(ss, ct)
	return ss, nil
}

// Encapsulate returns a ciphertext and shared secret, with the 32-byte
// encapsulation randomness m read from rand (FIPS 203 ML-KEM.Encaps).
func (k *kemPublicOf[R]) Encapsulate(rand io.Reader) (ct, ss []byte, err error) {
	var m [pqc.MLKEM768EncapsulationSeedSize]byte
	if _, err := io.ReadFull(rand, m[:]); err != nil {
		return nil, nil, err
	}
	ct = make([]byte, KEMCiphertextSize)
	ss = make([]byte, KEMSharedSecretSize)
	k.k.EncapsulateTo(ct, ss, m[:])
	return ct, ss, nil
}

// Raw returns the 1184-byte FIPS 203 encapsulation key.
func (k *kemPublicOf[R]) Raw() []byte { return append([]byte(nil), k.raw...) }

// Bytes returns the tagged binary encoding.
func (k *kemPublicOf[R]) Bytes() []byte {
	var r R
	return encodeBinary(r.tag(), k.raw)
}

// String returns the text encoding.
func (k *kemPublicOf[R]) String() string {
	var r R
	return encodeText(r.tag(), k.raw)
}

// Equal reports whether k and o are the same key.
func (k *kemPublicOf[R]) Equal(o *kemPublicOf[R]) bool {
	return subtle.ConstantTimeCompare(k.raw, o.raw) == 1
}

// GenerateKEMPrekeyKey returns a new ML-KEM-768 prekey pair from 64 bytes of rand.
func GenerateKEMPrekeyKey(rand io.Reader) (*KEMPrekeyPrivateKey, error) {
	return generateKEMOf[roleKEMPrekey](rand)
}

// NewKEMPrekeyPrivateKey derives a prekey pair from its 64-byte seed.
func NewKEMPrekeyPrivateKey(seed []byte) (*KEMPrekeyPrivateKey, error) {
	return newKEMPrivateOf[roleKEMPrekey](seed)
}

// NewKEMPrekeyPublicKey checks and imports a raw encapsulation key.
func NewKEMPrekeyPublicKey(raw []byte) (*KEMPrekeyPublicKey, error) {
	return newKEMPublicOf[roleKEMPrekey](raw)
}

// ParseKEMPrekeyPublicKey parses the tagged binary encoding.
func ParseKEMPrekeyPublicKey(b []byte) (*KEMPrekeyPublicKey, error) {
	return parseKEMOf[roleKEMPrekey](b)
}

// GenerateRatchetKEMKey returns a new ML-KEM-768 ratchet key pair from 64 bytes of rand.
func GenerateRatchetKEMKey(rand io.Reader) (*RatchetKEMPrivateKey, error) {
	return generateKEMOf[roleRatchetKEM](rand)
}

// NewRatchetKEMPrivateKey derives a ratchet key pair from its 64-byte seed.
func NewRatchetKEMPrivateKey(seed []byte) (*RatchetKEMPrivateKey, error) {
	return newKEMPrivateOf[roleRatchetKEM](seed)
}

// NewRatchetKEMPublicKey checks and imports a raw encapsulation key.
func NewRatchetKEMPublicKey(raw []byte) (*RatchetKEMPublicKey, error) {
	return newKEMPublicOf[roleRatchetKEM](raw)
}

// ParseRatchetKEMPublicKey parses the tagged binary encoding.
func ParseRatchetKEMPublicKey(b []byte) (*RatchetKEMPublicKey, error) {
	return parseKEMOf[roleRatchetKEM](b)
}

func parseKEMTextOf[R kemRole](s string) (*kemPublicOf[R], error) {
	var r R
	raw, err := decodeText(r.tag(), s, KEMPublicKeySize)
	if err != nil {
		return nil, err
	}
	return newKEMPublicOf[R](raw)
}

// ParseKEMPrekeyPublicKeyText parses the text encoding.
func ParseKEMPrekeyPublicKeyText(s string) (*KEMPrekeyPublicKey, error) {
	return parseKEMTextOf[roleKEMPrekey](s)
}

// ParseRatchetKEMPublicKeyText parses the text encoding.
func ParseRatchetKEMPublicKeyText(s string) (*RatchetKEMPublicKey, error) {
	return parseKEMTextOf[roleRatchetKEM](s)
}
