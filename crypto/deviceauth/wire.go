package deviceauth

// Wire formats of docs/spec/api.md §Device authentication, read and written
// with cryptobyte and parsed strictly.
//
//	struct {
//	    uint8   type = 0x2b;
//	    uint8   version = 1;
//	    Purpose purpose;
//	    opaque  relay<1..255>;      /* bytes 0x21-0x7e */
//	    uint64  issued_at;
//	    opaque  nonce[32];
//	    opaque  tag[32];            /* HMAC-SHA-256 by the relay */
//	} Challenge;
//
//	struct {
//	    uint8     type = 0x2c;
//	    uint8     version = 1;
//	    Challenge challenge;
//	    opaque    tenant[16];
//	    opaque    device[16];
//	    opaque    signature[64];    /* Ed25519 over ResponseTBS */
//	} Response;

import (
	"time"

	"golang.org/x/crypto/cryptobyte"
)

const (
	typeChallenge = 0x2b
	typeResponse  = 0x2c
	version1      = 1

	nonceSize     = 32
	tagSize       = 32
	signatureSize = 64
	maxRelayLen   = 255
	maxBinding    = 255
	// MaxResponseSize bounds a response; a relay refuses a larger one
	// before parsing it.
	MaxResponseSize = 512
	maxUnix         = 1<<63 - 1
)

// Purpose is what an authentication is for (docs/spec/api.md §Messages).
type Purpose uint8

const (
	PurposeMailbox        Purpose = 1 // fetch, acknowledge, push channel
	PurposePrekeys        Purpose = 2 // prekeys, KEM prekeys, sealed-sender key, KeyPackages
	PurposeAttachments    Purpose = 3 // attachment upload
	PurposeDeliveryTokens Purpose = 4 // register or delete MAC-token verifiers
	PurposeTokenIssuance  Purpose = 5 // anonymous delivery tokens
	PurposeAll            Purpose = 6 // every purpose above, in one session
)

func (p Purpose) valid() bool { return p >= PurposeMailbox && p <= PurposeAll }

// Covers reports whether an authentication for p authorises a request of
// purpose q: p is q, or p is PurposeAll and q one of the single purposes
// (docs/spec/api.md §Messages).
func (p Purpose) Covers(q Purpose) bool {
	return q.valid() && (p == q || p == PurposeAll)
}

// challenge is a decoded Challenge.
type challenge struct {
	purpose  Purpose
	relay    string
	issuedAt uint64
	nonce    [nonceSize]byte
	tag      [tagSize]byte
}

func validRelay(r string) bool {
	if len(r) == 0 || len(r) > maxRelayLen {
		return false
	}
	for i := 0; i < len(r); i++ {
		if r[i] < 0x21 || r[i] > 0x7e {
			return false
		}
	}
	return true
}

// appendUntagged appends the Challenge up to, not including, its tag.
func (c *challenge) appendUntagged(b []byte) []byte {
	b = append(b, typeChallenge, version1, byte(c.purpose), byte(len(c.relay)))
	b = append(b, c.relay...)
	b = append(b,
		byte(c.issuedAt>>56), byte(c.issuedAt>>48), byte(c.issuedAt>>40), byte(c.issuedAt>>32),
		byte(c.issuedAt>>24), byte(c.issuedAt>>16), byte(c.issuedAt>>8), byte(c.issuedAt))
	return append(b, c.nonce[:]...)
}

func (c *challenge) marshal() []byte {
	return append(c.appendUntagged(make([]byte, 0, 4+len(c.relay)+8+nonceSize+tagSize)), c.tag[:]...)
}

// readChallenge reads a Challenge from s.
func readChallenge(s *cryptobyte.String, c *challenge) bool {
	var typ, ver, purpose uint8
	var relay []byte
	if !s.ReadUint8(&typ) || typ != typeChallenge || !s.ReadUint8(&ver) || ver != version1 ||
		!s.ReadUint8(&purpose) || !Purpose(purpose).valid() ||
		!s.ReadUint8LengthPrefixed((*cryptobyte.String)(&relay)) || !validRelay(string(relay)) ||
		!s.ReadUint64(&c.issuedAt) || c.issuedAt > maxUnix ||
		!s.CopyBytes(c.nonce[:]) || !s.CopyBytes(c.tag[:]) {
		return false
	}
	c.purpose = Purpose(purpose)
	c.relay = string(relay)
	return true
}

func parseChallenge(b []byte) (*challenge, error) {
	s := cryptobyte.String(b)
	c := new(challenge)
	if !readChallenge(&s, c) || !s.Empty() {
		return nil, ErrMalformed
	}
	return c, nil
}

// response is a decoded Response.
type response struct {
	challenge challenge
	tenant    [16]byte
	device    [16]byte
	signature [signatureSize]byte
}

func (r *response) marshal() []byte {
	b := append([]byte{typeResponse, version1}, r.challenge.marshal()...)
	b = append(b, r.tenant[:]...)
	b = append(b, r.device[:]...)
	return append(b, r.signature[:]...)
}

func parseResponse(b []byte) (*response, error) {
	if len(b) > MaxResponseSize {
		return nil, ErrMalformed
	}
	s := cryptobyte.String(b)
	r := new(response)
	var typ, ver uint8
	if !s.ReadUint8(&typ) || typ != typeResponse || !s.ReadUint8(&ver) || ver != version1 ||
		!readChallenge(&s, &r.challenge) ||
		!s.CopyBytes(r.tenant[:]) || !s.CopyBytes(r.device[:]) || !s.CopyBytes(r.signature[:]) || !s.Empty() ||
		r.tenant == [16]byte{} || r.device == [16]byte{} {
		return nil, ErrMalformed
	}
	return r, nil
}

func unixSeconds(t time.Time) uint64 {
	if t.Unix() < 0 {
		return 0
	}
	return uint64(t.Unix())
}
