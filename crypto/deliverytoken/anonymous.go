package deliverytoken

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/cloudflare/circl/blindsign/blindrsa"
	"github.com/moat-im/moat/crypto/internal/label"
	"golang.org/x/crypto/cryptobyte"
)

// Anonymous delivery tokens (docs/spec/envelope.md §Anonymous delivery
// tokens): Privacy Pass tokens of RFC 9578 §6, token type 0x0002, blind RSA
// 2048 with RSABSSA-SHA384-PSS-Deterministic (RFC 9474), from circl.

const variant = blindrsa.SHA384PSSDeterministic

// spkiPrefix is the DER SubjectPublicKeyInfo of a 2048-bit RSASSA-PSS key
// (SHA-384, MGF1-SHA-384, 48-byte salt) up to its RSAPublicKey (RFC 9578
// §6.5). Only this prefix is accepted.
var spkiPrefix = []byte{
	0x30, 0x82, 0x01, 0x56, // SEQUENCE, 342 bytes
	0x30, 0x41, // AlgorithmIdentifier
	0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, // id-RSASSA-PSS
	0x30, 0x34, // RSASSA-PSS-params
	0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, // hash: SHA-384
	0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, // mgf: MGF1
	0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, //   with SHA-384
	0xa2, 0x03, 0x02, 0x01, 0x30, // saltLength: 48
	0x03, 0x82, 0x01, 0x0f, 0x00, // BIT STRING, 270 bytes, no unused bits
}

const (
	issuerModulusBits = 2048
	issuerExponent    = 65537
	// IssuerKeySize is the size of an issuer public key's SPKI encoding.
	IssuerKeySize = 76 + 270
)

// IssuerPublicKey is a tenant's Privacy Pass issuer key. The relay verifies
// anonymous tokens with it; clients must obtain it from their tenant's key
// directory (docs/spec/envelope.md §Anonymous delivery tokens).
type IssuerPublicKey struct {
	pk       *rsa.PublicKey
	spki     []byte
	id       [32]byte
	verifier blindrsa.Verifier
}

func newIssuerPublicKey(pk *rsa.PublicKey) (*IssuerPublicKey, error) {
	if pk.N.BitLen() != issuerModulusBits || pk.E != issuerExponent {
		return nil, ErrMalformed
	}
	spki := append(bytes.Clone(spkiPrefix), x509.MarshalPKCS1PublicKey(pk)...)
	if len(spki) != IssuerKeySize {
		return nil, ErrMalformed
	}
	v, err := blindrsa.NewVerifier(variant, pk)
	if err != nil {
		return nil, ErrMalformed
	}
	return &IssuerPublicKey{pk: pk, spki: spki, id: sha256.Sum256(spki), verifier: v}, nil
}

// ParseIssuerPublicKey parses the SPKI encoding of RFC 9578 §6.5 strictly:
// the fixed RSASSA-PSS prefix, a 2048-bit modulus and exponent 65537, in
// canonical DER.
func ParseIssuerPublicKey(spki []byte) (*IssuerPublicKey, error) {
	if len(spki) != IssuerKeySize || !bytes.HasPrefix(spki, spkiPrefix) {
		return nil, ErrMalformed
	}
	pk, err := x509.ParsePKCS1PublicKey(spki[len(spkiPrefix):])
	if err != nil {
		return nil, ErrMalformed
	}
	k, err := newIssuerPublicKey(pk)
	if err != nil || !bytes.Equal(k.spki, spki) {
		return nil, ErrMalformed
	}
	return k, nil
}

// Bytes returns the SPKI encoding.
func (k *IssuerPublicKey) Bytes() []byte { return bytes.Clone(k.spki) }

// KeyID returns token_key_id, the SHA-256 of the SPKI encoding.
func (k *IssuerPublicKey) KeyID() [32]byte { return k.id }

// verify reports whether t's authenticator is a valid RSASSA-PSS signature
// under k over its authenticator input (RFC 9578 §6.4), with circl's
// verifier (SHA-384, MGF1 with SHA-384, 48-byte salt). The standard
// library's rsa.VerifyPSS gives the same answers (TestVerifiersAgree) at
// about the same cost (docs/performance.md §Sealed sender).
func (k *IssuerPublicKey) verify(t *AnonymousToken) bool {
	return k.verifier.Verify(t.authenticatorInput(), t.Authenticator[:]) == nil
}

// IssuerPrivateKey is a tenant's Privacy Pass issuer key. It prints as a
// redaction.
type IssuerPrivateKey struct {
	_   [0]func()
	sk  *rsa.PrivateKey
	pub *IssuerPublicKey
}

// GenerateIssuerKey returns a new 2048-bit issuer key.
func GenerateIssuerKey() (*IssuerPrivateKey, error) {
	sk, err := rsa.GenerateKey(rand.Reader, issuerModulusBits)
	if err != nil {
		return nil, err
	}
	return NewIssuerPrivateKey(sk)
}

// NewIssuerPrivateKey wraps an RSA key of exactly 2048 bits with public
// exponent 65537.
func NewIssuerPrivateKey(sk *rsa.PrivateKey) (*IssuerPrivateKey, error) {
	if sk == nil || sk.Validate() != nil {
		return nil, ErrMalformed
	}
	pub, err := newIssuerPublicKey(&sk.PublicKey)
	if err != nil {
		return nil, err
	}
	return &IssuerPrivateKey{sk: sk, pub: pub}, nil
}

// ParseIssuerPrivateKey parses a PKCS #8 RSA private key.
func ParseIssuerPrivateKey(der []byte) (*IssuerPrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, ErrMalformed
	}
	sk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, ErrMalformed
	}
	return NewIssuerPrivateKey(sk)
}

// MarshalPKCS8 returns the key in PKCS #8, for an encrypted store or a KMS.
// Callers must not log it.
func (k *IssuerPrivateKey) MarshalPKCS8() ([]byte, error) { return x509.MarshalPKCS8PrivateKey(k.sk) }

// Public returns the public key.
func (k *IssuerPrivateKey) Public() *IssuerPublicKey { return k.pub }

// Format prints a redaction with every verb.
func (k *IssuerPrivateKey) Format(f fmt.State, _ rune) {
	_, _ = f.Write([]byte("[secret key redacted]"))
}

// TokenChallenge returns the RFC 9577 §2.1 TokenChallenge every anonymous
// token of tenant answers: token type 0x0002, the issuer name
// "moat/v1/delivery-token/issuer/" || lower-case hex(tenant), and empty
// redemption context and origin info.
func TokenChallenge(tenant [16]byte) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddUint16(TokenType)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddBytes([]byte(label.DeliveryTokenIssuer))
		b.AddBytes([]byte(hex.EncodeToString(tenant[:])))
	})
	b.AddUint8LengthPrefixed(func(*cryptobyte.Builder) {})
	b.AddUint16LengthPrefixed(func(*cryptobyte.Builder) {})
	return b.BytesOrPanic()
}

// ChallengeDigest returns SHA-256(TokenChallenge(tenant)).
func ChallengeDigest(tenant [16]byte) [32]byte { return sha256.Sum256(TokenChallenge(tenant)) }

// PendingTokens is a client's half of one issuance: the nonces and
// blinding state of each request. It holds secrets and is used once.
type PendingTokens struct {
	pub    *IssuerPublicKey
	digest [32]byte
	nonces [][32]byte
	states []blindrsa.State
}

// RequestTokens starts issuance of n tokens (1 ≤ n ≤ MaxBatch) of tenant
// under pub, which the caller MUST have obtained from its tenant's key
// directory. It returns the TokenIssuanceRequest to send to the issuer.
func RequestTokens(pub *IssuerPublicKey, tenant [16]byte, n int) ([]byte, *PendingTokens, error) {
	return requestTokens(rand.Reader, pub, ChallengeDigest(tenant), n)
}

// requestTokens reads, for each token, its 32-byte nonce, then the 48-byte
// PSS salt and the blinding factor (circl's Blind) from r.
func requestTokens(r io.Reader, pub *IssuerPublicKey, digest [32]byte, n int) ([]byte, *PendingTokens, error) {
	if n < 1 || n > MaxBatch {
		return nil, nil, ErrMalformed
	}
	c, err := blindrsa.NewClient(variant, pub.pk)
	if err != nil {
		return nil, nil, err
	}
	p := &PendingTokens{pub: pub, digest: digest, nonces: make([][32]byte, n), states: make([]blindrsa.State, n)}
	reqs := make([]tokenRequest, n)
	for i := range n {
		if _, err := io.ReadFull(r, p.nonces[i][:]); err != nil {
			return nil, nil, err
		}
		blinded, st, err := c.Blind(r, tokenInput(p.nonces[i], digest, pub.id))
		if err != nil {
			return nil, nil, err
		}
		p.states[i] = st
		reqs[i] = tokenRequest{truncatedKeyID: pub.id[31], blindedMsg: blinded}
	}
	req, err := marshalIssuanceRequest(reqs)
	if err != nil {
		return nil, nil, err
	}
	return req, p, nil
}

// Finalize unblinds the issuer's response and returns the tokens, each
// verified under the issuer key; a response that does not verify is
// ErrWrongKey, a malformed one ErrMalformed.
func (p *PendingTokens) Finalize(response []byte) ([]*AnonymousToken, error) {
	sigs, err := parseIssuanceResponse(response, len(p.states))
	if err != nil {
		return nil, err
	}
	c, err := blindrsa.NewClient(variant, p.pub.pk)
	if err != nil {
		return nil, err
	}
	out := make([]*AnonymousToken, len(sigs))
	for i, sig := range sigs {
		auth, err := c.Finalize(p.states[i], sig)
		if err != nil || len(auth) != nk {
			return nil, ErrWrongKey
		}
		t := &AnonymousToken{Nonce: p.nonces[i], ChallengeDigest: p.digest, KeyID: p.pub.id}
		copy(t.Authenticator[:], auth)
		out[i] = t
	}
	return out, nil
}

// Issue answers a TokenIssuanceRequest (RFC 9578 §6.2). It checks every
// request's type, truncated key id and size before it signs any, and
// returns the TokenIssuanceResponse and the number of tokens issued, which
// the caller counts against the device's quota. The caller MUST have
// authenticated the device (docs/spec/api.md §Device authentication,
// purpose token_issuance) and checked that quota first.
func (k *IssuerPrivateKey) Issue(request []byte) ([]byte, int, error) {
	reqs, err := parseIssuanceRequest(request)
	if err != nil {
		return nil, 0, err
	}
	for _, r := range reqs {
		if r.truncatedKeyID != k.pub.id[31] {
			return nil, 0, ErrMalformed
		}
	}
	signer := blindrsa.NewSigner(k.sk)
	sigs := make([][]byte, len(reqs))
	for i, r := range reqs {
		if sigs[i], err = signer.BlindSign(r.blindedMsg); err != nil {
			return nil, 0, ErrMalformed
		}
	}
	resp, err := marshalIssuanceResponse(sigs)
	if err != nil {
		return nil, 0, err
	}
	return resp, len(reqs), nil
}
