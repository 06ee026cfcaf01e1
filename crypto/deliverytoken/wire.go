package deliverytoken

// Wire formats of docs/spec/envelope.md §Delivery tokens, read and written
// with cryptobyte and parsed strictly (fixed sizes, known kinds only, no
// trailing bytes). The Privacy Pass structures keep their RFC 9578
// encodings and travel only inside the Moat ones.
//
//	struct {
//	    uint8     type = 0x28;
//	    uint8     version = 1;
//	    TokenKind kind;                 /* mac(1), anonymous(2) */
//	    select (kind) {
//	        case mac:       opaque token[32];
//	        case anonymous: opaque privacy_pass_token[354];
//	    };
//	} SendAuthorization;
//
//	struct {                           /* RFC 9578 §6.3 */
//	    uint16 token_type = 0x0002;
//	    opaque nonce[32];
//	    opaque challenge_digest[32];
//	    opaque token_key_id[32];
//	    opaque authenticator[256];
//	} Token;
//
//	struct { uint8 type = 0x29; uint8 version = 1; opaque requests<259..2^16-1>; } TokenIssuanceRequest;
//	struct { uint8 type = 0x2a; uint8 version = 1; opaque responses<256..2^16-1>; } TokenIssuanceResponse;
//
//	struct {                           /* RFC 9578 §6.1 */
//	    uint16 token_type = 0x0002;
//	    uint8  truncated_token_key_id;
//	    opaque blinded_msg[256];
//	} TokenRequest;

import (
	"golang.org/x/crypto/cryptobyte"
)

// Type bytes (docs/spec/envelope.md §Encodings are disjoint).
const (
	typeSendAuthorization = 0x28
	typeIssuanceRequest   = 0x29
	typeIssuanceResponse  = 0x2a
	version1              = 1
)

// Kind is the kind of a SendAuthorization.
type Kind uint8

const (
	// KindMAC is a MAC delivery token.
	KindMAC Kind = 1
	// KindAnonymous is a one-time anonymous (Privacy Pass) token.
	KindAnonymous Kind = 2
)

// Privacy Pass constants (RFC 9578 §6, token type Blind RSA 2048).
const (
	// TokenType is the Privacy Pass token type of anonymous tokens.
	TokenType = 0x0002
	// nk is the size of a blinded message, blind signature and
	// authenticator: a 2048-bit modulus.
	nk = 256
	// AnonymousTokenSize is the size of an RFC 9578 Token of TokenType.
	AnonymousTokenSize = 2 + 32 + 32 + 32 + nk
	tokenRequestSize   = 2 + 1 + nk
	// MaxBatch is the most tokens one issuance request may ask for.
	MaxBatch = 64

	sendAuthMACSize       = 3 + 32
	sendAuthAnonymousSize = 3 + AnonymousTokenSize
)

// SendAuthorization is what a sender presents with an envelope
// (docs/spec/envelope.md §Delivery tokens). Exactly one of MAC (for
// KindMAC) and Anonymous (for KindAnonymous) is meaningful.
type SendAuthorization struct {
	Kind      Kind
	MAC       Token
	Anonymous *AnonymousToken
}

// Marshal returns the SendAuthorization encoding, 35 or 357 bytes.
func (a *SendAuthorization) Marshal() ([]byte, error) {
	switch a.Kind {
	case KindMAC:
		return append([]byte{typeSendAuthorization, version1, byte(KindMAC)}, a.MAC[:]...), nil
	case KindAnonymous:
		if a.Anonymous == nil {
			return nil, ErrMalformed
		}
		return append([]byte{typeSendAuthorization, version1, byte(KindAnonymous)}, a.Anonymous.Marshal()...), nil
	}
	return nil, ErrMalformed
}

// ParseSendAuthorization parses a SendAuthorization strictly. It does not
// retain b.
func ParseSendAuthorization(b []byte) (*SendAuthorization, error) {
	if len(b) != sendAuthMACSize && len(b) != sendAuthAnonymousSize {
		return nil, ErrMalformed
	}
	s := cryptobyte.String(b)
	var typ, ver, kind uint8
	if !s.ReadUint8(&typ) || typ != typeSendAuthorization || !s.ReadUint8(&ver) || ver != version1 || !s.ReadUint8(&kind) {
		return nil, ErrMalformed
	}
	a := &SendAuthorization{Kind: Kind(kind)}
	switch {
	case a.Kind == KindMAC && len(s) == len(a.MAC):
		copy(a.MAC[:], s)
	case a.Kind == KindAnonymous && len(s) == AnonymousTokenSize:
		t, err := ParseAnonymousToken(s)
		if err != nil {
			return nil, err
		}
		a.Anonymous = t
	default:
		return nil, ErrMalformed
	}
	return a, nil
}

// AnonymousToken is an RFC 9578 Token of type 0x0002.
type AnonymousToken struct {
	Nonce           [32]byte
	ChallengeDigest [32]byte
	KeyID           [32]byte // token_key_id: SHA-256 of the issuer key's SPKI
	Authenticator   [nk]byte // RSASSA-PSS signature over authenticatorInput
}

// Marshal returns the 354-byte Token encoding.
func (t *AnonymousToken) Marshal() []byte {
	b := make([]byte, 0, AnonymousTokenSize)
	b = append(b, t.authenticatorInput()...)
	return append(b, t.Authenticator[:]...)
}

// authenticatorInput is token_type || nonce || challenge_digest ||
// token_key_id, the message the issuer signs blindly (RFC 9578 §6.4).
func (t *AnonymousToken) authenticatorInput() []byte {
	return tokenInput(t.Nonce, t.ChallengeDigest, t.KeyID)
}

func tokenInput(nonce, digest, keyID [32]byte) []byte {
	b := make([]byte, 0, 2+3*32)
	b = append(b, byte(TokenType>>8), byte(TokenType&0xff))
	b = append(b, nonce[:]...)
	b = append(b, digest[:]...)
	return append(b, keyID[:]...)
}

// ParseAnonymousToken parses an RFC 9578 Token of type 0x0002 strictly.
func ParseAnonymousToken(b []byte) (*AnonymousToken, error) {
	s := cryptobyte.String(b)
	var typ uint16
	t := new(AnonymousToken)
	if len(b) != AnonymousTokenSize || !s.ReadUint16(&typ) || typ != TokenType ||
		!s.CopyBytes(t.Nonce[:]) || !s.CopyBytes(t.ChallengeDigest[:]) || !s.CopyBytes(t.KeyID[:]) ||
		!s.CopyBytes(t.Authenticator[:]) || !s.Empty() {
		return nil, ErrMalformed
	}
	return t, nil
}

// tokenRequest is an RFC 9578 §6.1 TokenRequest.
type tokenRequest struct {
	truncatedKeyID byte
	blindedMsg     []byte // nk bytes
}

func marshalIssuanceRequest(reqs []tokenRequest) ([]byte, error) {
	if len(reqs) == 0 || len(reqs) > MaxBatch {
		return nil, ErrMalformed
	}
	b := cryptobyte.NewFixedBuilder(make([]byte, 0, 4+len(reqs)*tokenRequestSize))
	b.AddUint8(typeIssuanceRequest)
	b.AddUint8(version1)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, r := range reqs {
			if len(r.blindedMsg) != nk {
				b.SetError(ErrMalformed)
				return
			}
			b.AddUint16(TokenType)
			b.AddUint8(r.truncatedKeyID)
			b.AddBytes(r.blindedMsg)
		}
	})
	out, err := b.Bytes()
	if err != nil {
		return nil, ErrMalformed
	}
	return out, nil
}

// parseIssuanceRequest parses a TokenIssuanceRequest strictly: 1 to
// MaxBatch requests, each of TokenType. The blinded messages are copied.
func parseIssuanceRequest(data []byte) ([]tokenRequest, error) {
	if len(data) > 4+MaxBatch*tokenRequestSize {
		return nil, ErrMalformed
	}
	s := cryptobyte.String(data)
	var typ, ver uint8
	var body cryptobyte.String
	if !s.ReadUint8(&typ) || typ != typeIssuanceRequest || !s.ReadUint8(&ver) || ver != version1 ||
		!s.ReadUint16LengthPrefixed(&body) || !s.Empty() ||
		len(body) == 0 || len(body)%tokenRequestSize != 0 {
		return nil, ErrMalformed
	}
	reqs := make([]tokenRequest, 0, len(body)/tokenRequestSize)
	for !body.Empty() {
		var typ uint16
		var r tokenRequest
		if !body.ReadUint16(&typ) || typ != TokenType || !body.ReadUint8(&r.truncatedKeyID) || !body.ReadBytes(&r.blindedMsg, nk) {
			return nil, ErrMalformed
		}
		r.blindedMsg = append([]byte(nil), r.blindedMsg...)
		reqs = append(reqs, r)
	}
	return reqs, nil
}

func marshalIssuanceResponse(sigs [][]byte) ([]byte, error) {
	b := cryptobyte.NewFixedBuilder(make([]byte, 0, 4+len(sigs)*nk))
	b.AddUint8(typeIssuanceResponse)
	b.AddUint8(version1)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, s := range sigs {
			if len(s) != nk {
				b.SetError(ErrMalformed)
				return
			}
			b.AddBytes(s)
		}
	})
	out, err := b.Bytes()
	if err != nil || len(sigs) == 0 || len(sigs) > MaxBatch {
		return nil, ErrMalformed
	}
	return out, nil
}

// parseIssuanceResponse parses a TokenIssuanceResponse of exactly n blind
// signatures.
func parseIssuanceResponse(data []byte, n int) ([][]byte, error) {
	if len(data) != 4+n*nk {
		return nil, ErrMalformed
	}
	s := cryptobyte.String(data)
	var typ, ver uint8
	var body cryptobyte.String
	if !s.ReadUint8(&typ) || typ != typeIssuanceResponse || !s.ReadUint8(&ver) || ver != version1 ||
		!s.ReadUint16LengthPrefixed(&body) || !s.Empty() || len(body) != n*nk {
		return nil, ErrMalformed
	}
	sigs := make([][]byte, n)
	for i := range sigs {
		var sig []byte
		body.ReadBytes(&sig, nk)
		sigs[i] = append([]byte(nil), sig...)
	}
	return sigs, nil
}
