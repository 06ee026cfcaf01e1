package keys

import "io"

// Each X25519 role is a distinct instantiation of x25519PublicOf and
// x25519PrivateOf, so that keys of different roles are different Go types.

type x25519Role interface{ tag() Tag }

type (
	roleIdentityDH    struct{}
	roleOneTimePrekey struct{}
	roleSignedPrekey  struct{}
	roleRatchetDH     struct{}
	roleEphemeralDH   struct{}
)

func (roleIdentityDH) tag() Tag    { return TagIdentityDH }
func (roleOneTimePrekey) tag() Tag { return TagOneTimePrekey }
func (roleSignedPrekey) tag() Tag  { return TagSignedPrekey }
func (roleRatchetDH) tag() Tag     { return TagRatchetDH }
func (roleEphemeralDH) tag() Tag   { return TagEphemeralDH }

type (
	// IdentityDHPublicKey is a device's X25519 identity DH key, the second
	// half of its identity, certified by the org CA (docs/spec/keys.md
	// §Device identity).
	IdentityDHPublicKey = x25519PublicOf[roleIdentityDH]
	// IdentityDHPrivateKey is the private half of IdentityDHPublicKey.
	IdentityDHPrivateKey = x25519PrivateOf[roleIdentityDH]

	// OneTimePrekeyPublicKey is an X25519 one-time prekey
	// (docs/spec/keys.md §One-time prekeys).
	OneTimePrekeyPublicKey = x25519PublicOf[roleOneTimePrekey]
	// OneTimePrekeyPrivateKey is the private half of OneTimePrekeyPublicKey.
	OneTimePrekeyPrivateKey = x25519PrivateOf[roleOneTimePrekey]

	// SignedPrekeyPublicKey is the X25519 key inside a SignedPrekey
	// (docs/spec/keys.md §Signed prekeys).
	SignedPrekeyPublicKey = x25519PublicOf[roleSignedPrekey]
	// SignedPrekeyPrivateKey is the private half of SignedPrekeyPublicKey.
	SignedPrekeyPrivateKey = x25519PrivateOf[roleSignedPrekey]

	// RatchetDHPublicKey is an X25519 Double Ratchet key
	// (docs/spec/ratchet.md §Chains).
	RatchetDHPublicKey = x25519PublicOf[roleRatchetDH]
	// RatchetDHPrivateKey is the private half of RatchetDHPublicKey.
	RatchetDHPrivateKey = x25519PrivateOf[roleRatchetDH]

	// EphemeralDHPublicKey is a PQXDH initiator's ephemeral key EK_A
	// (docs/spec/pqxdh.md §Initial message).
	EphemeralDHPublicKey = x25519PublicOf[roleEphemeralDH]
	// EphemeralDHPrivateKey is the private half of EphemeralDHPublicKey.
	EphemeralDHPrivateKey = x25519PrivateOf[roleEphemeralDH]
)

// x25519PublicOf is an X25519 public key of role R.
type x25519PublicOf[R x25519Role] struct{ x25519Public }

// x25519PrivateOf is an X25519 private key of role R.
type x25519PrivateOf[R x25519Role] struct {
	x25519Private
	pub x25519PublicOf[R]
}

func generateX25519Of[R x25519Role](rand io.Reader) (*x25519PrivateOf[R], error) {
	k, err := generateX25519(rand)
	if err != nil {
		return nil, err
	}
	return &x25519PrivateOf[R]{x25519Private: k, pub: x25519PublicOf[R]{k.publicCore()}}, nil
}

func newX25519PrivateOf[R x25519Role](raw []byte) (*x25519PrivateOf[R], error) {
	k, err := newX25519Private(raw)
	if err != nil {
		return nil, err
	}
	return &x25519PrivateOf[R]{x25519Private: k, pub: x25519PublicOf[R]{k.publicCore()}}, nil
}

func newX25519PublicOf[R x25519Role](raw []byte) (*x25519PublicOf[R], error) {
	p, err := newX25519Public(raw)
	if err != nil {
		return nil, err
	}
	return &x25519PublicOf[R]{p}, nil
}

func parseX25519Of[R x25519Role](b []byte) (*x25519PublicOf[R], error) {
	var r R
	raw, err := decodeBinary(r.tag(), b, x25519Len)
	if err != nil {
		return nil, err
	}
	return newX25519PublicOf[R](raw)
}

func parseX25519TextOf[R x25519Role](s string) (*x25519PublicOf[R], error) {
	var r R
	raw, err := decodeText(r.tag(), s, x25519Len)
	if err != nil {
		return nil, err
	}
	return newX25519PublicOf[R](raw)
}

// Public returns the public half.
func (k *x25519PrivateOf[R]) Public() *x25519PublicOf[R] { return &k.pub }

// Equal reports in constant time whether k and o are the same key.
func (k *x25519PrivateOf[R]) Equal(o *x25519PrivateOf[R]) bool { return k.equal(&o.x25519Private) }

// Bytes returns the tagged binary encoding.
func (k *x25519PublicOf[R]) Bytes() []byte {
	var r R
	return encodeBinary(r.tag(), k.Raw())
}

// String returns the text encoding.
func (k *x25519PublicOf[R]) String() string {
	var r R
	return encodeText(r.tag(), k.Raw())
}

// Equal reports whether k and o are the same key.
func (k *x25519PublicOf[R]) Equal(o *x25519PublicOf[R]) bool { return k.equal(&o.x25519Public) }

// Constructors and parsers, one set per role.

// GenerateIdentityDHKey returns a new key from 32 bytes of rand.
func GenerateIdentityDHKey(rand io.Reader) (*IdentityDHPrivateKey, error) {
	return generateX25519Of[roleIdentityDH](rand)
}

// NewIdentityDHPrivateKey imports a 32-byte private scalar.
func NewIdentityDHPrivateKey(raw []byte) (*IdentityDHPrivateKey, error) {
	return newX25519PrivateOf[roleIdentityDH](raw)
}

// NewIdentityDHPublicKey checks and imports a raw 32-byte key.
func NewIdentityDHPublicKey(raw []byte) (*IdentityDHPublicKey, error) {
	return newX25519PublicOf[roleIdentityDH](raw)
}

// ParseIdentityDHPublicKey parses the tagged binary encoding.
func ParseIdentityDHPublicKey(b []byte) (*IdentityDHPublicKey, error) {
	return parseX25519Of[roleIdentityDH](b)
}

// ParseIdentityDHPublicKeyText parses the text encoding.
func ParseIdentityDHPublicKeyText(s string) (*IdentityDHPublicKey, error) {
	return parseX25519TextOf[roleIdentityDH](s)
}

// GenerateOneTimePrekey returns a new key from 32 bytes of rand.
func GenerateOneTimePrekey(rand io.Reader) (*OneTimePrekeyPrivateKey, error) {
	return generateX25519Of[roleOneTimePrekey](rand)
}

// NewOneTimePrekeyPrivateKey imports a 32-byte private scalar.
func NewOneTimePrekeyPrivateKey(raw []byte) (*OneTimePrekeyPrivateKey, error) {
	return newX25519PrivateOf[roleOneTimePrekey](raw)
}

// ParseOneTimePrekeyPublicKey parses the tagged binary encoding.
func ParseOneTimePrekeyPublicKey(b []byte) (*OneTimePrekeyPublicKey, error) {
	return parseX25519Of[roleOneTimePrekey](b)
}

// GenerateSignedPrekeyKey returns a new key from 32 bytes of rand.
func GenerateSignedPrekeyKey(rand io.Reader) (*SignedPrekeyPrivateKey, error) {
	return generateX25519Of[roleSignedPrekey](rand)
}

// NewSignedPrekeyPrivateKey imports a 32-byte private scalar.
func NewSignedPrekeyPrivateKey(raw []byte) (*SignedPrekeyPrivateKey, error) {
	return newX25519PrivateOf[roleSignedPrekey](raw)
}

// ParseSignedPrekeyPublicKey parses the tagged binary encoding.
func ParseSignedPrekeyPublicKey(b []byte) (*SignedPrekeyPublicKey, error) {
	return parseX25519Of[roleSignedPrekey](b)
}

// GenerateRatchetDHKey returns a new key from 32 bytes of rand.
func GenerateRatchetDHKey(rand io.Reader) (*RatchetDHPrivateKey, error) {
	return generateX25519Of[roleRatchetDH](rand)
}

// NewRatchetDHPrivateKey imports a 32-byte private scalar.
func NewRatchetDHPrivateKey(raw []byte) (*RatchetDHPrivateKey, error) {
	return newX25519PrivateOf[roleRatchetDH](raw)
}

// NewRatchetDHPublicKey checks and imports a raw 32-byte key.
func NewRatchetDHPublicKey(raw []byte) (*RatchetDHPublicKey, error) {
	return newX25519PublicOf[roleRatchetDH](raw)
}

// GenerateEphemeralDHKey returns a new key from 32 bytes of rand.
func GenerateEphemeralDHKey(rand io.Reader) (*EphemeralDHPrivateKey, error) {
	return generateX25519Of[roleEphemeralDH](rand)
}

// NewEphemeralDHPublicKey checks and imports a raw 32-byte key.
func NewEphemeralDHPublicKey(raw []byte) (*EphemeralDHPublicKey, error) {
	return newX25519PublicOf[roleEphemeralDH](raw)
}

// ParseEphemeralDHPublicKey parses the tagged binary encoding.
func ParseEphemeralDHPublicKey(b []byte) (*EphemeralDHPublicKey, error) {
	return parseX25519Of[roleEphemeralDH](b)
}

// ParseRatchetDHPublicKey parses the tagged binary encoding.
func ParseRatchetDHPublicKey(b []byte) (*RatchetDHPublicKey, error) {
	return parseX25519Of[roleRatchetDH](b)
}

// ParseOneTimePrekeyPublicKeyText parses the text encoding.
func ParseOneTimePrekeyPublicKeyText(s string) (*OneTimePrekeyPublicKey, error) {
	return parseX25519TextOf[roleOneTimePrekey](s)
}

// ParseSignedPrekeyPublicKeyText parses the text encoding.
func ParseSignedPrekeyPublicKeyText(s string) (*SignedPrekeyPublicKey, error) {
	return parseX25519TextOf[roleSignedPrekey](s)
}

// ParseRatchetDHPublicKeyText parses the text encoding.
func ParseRatchetDHPublicKeyText(s string) (*RatchetDHPublicKey, error) {
	return parseX25519TextOf[roleRatchetDH](s)
}

// ParseEphemeralDHPublicKeyText parses the text encoding.
func ParseEphemeralDHPublicKeyText(s string) (*EphemeralDHPublicKey, error) {
	return parseX25519TextOf[roleEphemeralDH](s)
}
