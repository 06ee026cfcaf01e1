package org

import (
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

// EnrolmentCode is a single-use code an admin hands to a user to enrol a
// new device (docs/spec/org.md §Enrolment codes). It names the tenant and
// the code, carries a 128-bit secret, and carries the fingerprint of the
// tenant's trust bundle, against which the new device checks the trust
// anchors the directory sends it (§Trust bootstrap).
//
// The secret never appears in String or any fmt output; Text returns the
// full code for display to its user.
type EnrolmentCode struct {
	Tenant      TenantID
	ID          CodeID
	secret      *[secretSize]byte // behind a pointer, so fmt never reaches it
	Fingerprint [32]byte          // TrustBundle.Fingerprint
}

// secretSize is the size of an enrolment code's secret: 128 bits, above
// the 100 bits docs/spec/org.md §Enrolment codes requires.
const secretSize = 16

// EnrolmentCodePrefix starts the text encoding of an enrolment code.
const EnrolmentCodePrefix = "moat-enrol1:"

const enrolmentCodeSize = 2 + idSize + idSize + secretSize + 32

// Format prints the code without its secret, whatever the verb.
func (c EnrolmentCode) Format(f fmt.State, _ rune) {
	_, _ = fmt.Fprintf(f, "%s[code %s of tenant %s, secret redacted]", EnrolmentCodePrefix, c.ID, c.Tenant)
}

// String returns the code without its secret.
func (c EnrolmentCode) String() string { return fmt.Sprint(c) }

//	struct {
//	    uint8  type = 0x32;
//	    uint8  version = 1;
//	    opaque tenant[16];
//	    opaque code_id[16];
//	    opaque secret[16];
//	    opaque trust_fingerprint[32];
//	} EnrolmentCode;                  /* 82 bytes */

// Marshal returns the binary EnrolmentCode encoding. It contains the secret.
func (c *EnrolmentCode) Marshal() []byte {
	out := make([]byte, 0, enrolmentCodeSize)
	out = append(out, typeEnrolmentCode, version1)
	out = append(out, c.Tenant[:]...)
	out = append(out, c.ID[:]...)
	out = append(out, c.secretBytes()...)
	return append(out, c.Fingerprint[:]...)
}

// Text returns the text encoding: "moat-enrol1:" followed by the unpadded
// base64url encoding of the binary encoding. It contains the secret.
func (c *EnrolmentCode) Text() string {
	return EnrolmentCodePrefix + base64.RawURLEncoding.EncodeToString(c.Marshal())
}

// ParseEnrolmentCode parses the binary encoding.
func ParseEnrolmentCode(data []byte) (*EnrolmentCode, error) {
	s := cryptobyte.String(data)
	var typ, ver uint8
	c := &EnrolmentCode{secret: new([secretSize]byte)}
	if !s.ReadUint8(&typ) || typ != typeEnrolmentCode || !s.ReadUint8(&ver) || ver != version1 ||
		!readID(&s, (*[16]byte)(&c.Tenant)) || !readID(&s, (*[16]byte)(&c.ID)) ||
		!s.CopyBytes(c.secret[:]) || !s.CopyBytes(c.Fingerprint[:]) || !s.Empty() || c.Tenant.IsZero() {
		return nil, &parseError{"enrolment code"}
	}
	return c, nil
}

// ParseEnrolmentCodeText parses the text encoding strictly: the prefix,
// exactly 110 base64url characters, no padding, zero trailing bits, nothing
// else. User interfaces trim the white space that copying and pasting adds
// before calling it.
func ParseEnrolmentCodeText(text string) (*EnrolmentCode, error) {
	body, ok := strings.CutPrefix(text, EnrolmentCodePrefix)
	if !ok || len(body) != base64.RawURLEncoding.EncodedLen(enrolmentCodeSize) {
		return nil, &parseError{"enrolment code"}
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil {
		return nil, &parseError{"enrolment code"}
	}
	return ParseEnrolmentCode(raw)
}

// secretBytes returns the secret, or zeros for a code that has none (the
// zero EnrolmentCode), which no record matches.
func (c *EnrolmentCode) secretBytes() []byte {
	if c.secret == nil {
		return make([]byte, secretSize)
	}
	return c.secret[:]
}

// secretHash is what the directory stores in place of the secret:
// SHA-256("moat/v1/org/enrolment-secret" || 0x00 || tenant || code_id ||
// secret). The secret has 128 bits of entropy, so a fast hash suffices.
func secretHash(tenant TenantID, id CodeID, secret []byte) [32]byte {
	return sha256Sum(labelled(labelEnrolmentSecret, nil), tenant[:], id[:], secret)
}

// newEnrolmentCode draws a code id and secret from rand.
func newEnrolmentCode(rand io.Reader, tenant TenantID, fp [32]byte) (*EnrolmentCode, error) {
	c := &EnrolmentCode{Tenant: tenant, Fingerprint: fp, secret: new([secretSize]byte)}
	if _, err := io.ReadFull(rand, c.ID[:]); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(rand, c.secret[:]); err != nil {
		return nil, err
	}
	return c, nil
}

// EnrolmentRequest is what a new device sends with its enrolment code
// (§Enrolment requests): the keys it asks the CA to certify, signed by its
// own identity signing key, which proves that the device holds it. The
// request does not contain the code's secret.
type EnrolmentRequest struct {
	Tenant    TenantID
	Code      CodeID
	Identity  keys.DeviceIdentity
	MLSKey    *MLSSignatureKey
	Signature []byte // Ed25519 by Identity.Signing
}

//	struct {
//	    uint8  type = 0x33;
//	    uint8  version = 1;
//	    opaque tenant[16];
//	    opaque code_id[16];
//	    opaque identity_signing[33];
//	    opaque identity_dh[33];
//	    MLSSignatureKey mls_signature_key;
//	} EnrolmentRequestTBS;
//
//	struct {
//	    EnrolmentRequestTBS tbs;
//	    opaque signature[64];   /* identity_signing over "moat/v1/org/enrolment-request" || 0x00 || tbs */
//	} EnrolmentRequest;

func (r *EnrolmentRequest) tbs() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		if r.Tenant.IsZero() {
			b.SetError(errEncode)
		}
		b.AddUint8(typeEnrolmentRequest)
		b.AddUint8(version1)
		addID(b, r.Tenant[:])
		addID(b, r.Code[:])
		addIdentity(b, r.Identity)
		addMLSKey(b, r.MLSKey)
	})
}

// NewEnrolmentRequest builds and signs the request of a device with
// identity id and MLS signature key mls, for code.
func NewEnrolmentRequest(code *EnrolmentCode, id *keys.DeviceIdentityPrivate, mls *MLSSignatureKey) (*EnrolmentRequest, error) {
	r := &EnrolmentRequest{Tenant: code.Tenant, Code: code.ID, Identity: id.Public(), MLSKey: mls}
	tbs, err := r.tbs()
	if err != nil {
		return nil, err
	}
	r.Signature = id.Signing.Sign(labelled(labelEnrolmentRequest, tbs))
	return r, nil
}

// Marshal returns the EnrolmentRequest encoding.
func (r *EnrolmentRequest) Marshal() ([]byte, error) {
	tbs, err := r.tbs()
	if err != nil {
		return nil, err
	}
	if len(r.Signature) != ed25519SigLen {
		return nil, errEncode
	}
	return append(tbs, r.Signature...), nil
}

// ParseEnrolmentRequest parses an EnrolmentRequest encoding strictly. It
// does not verify the signature: redemption does.
func ParseEnrolmentRequest(data []byte) (*EnrolmentRequest, error) {
	r, err := parseEnrolmentRequest(data)
	if err != nil {
		return nil, parseErr("enrolment request", err)
	}
	return r, nil
}

func parseEnrolmentRequest(data []byte) (*EnrolmentRequest, error) {
	if len(data) < ed25519SigLen {
		return nil, ErrMalformed
	}
	tbs, sig := data[:len(data)-ed25519SigLen], data[len(data)-ed25519SigLen:]
	s := cryptobyte.String(tbs)
	r := &EnrolmentRequest{Signature: clone(sig)}
	var typ, ver uint8
	if !s.ReadUint8(&typ) || typ != typeEnrolmentRequest || !s.ReadUint8(&ver) || ver != version1 ||
		!readID(&s, (*[16]byte)(&r.Tenant)) || !readID(&s, (*[16]byte)(&r.Code)) {
		return nil, ErrMalformed
	}
	if err := readIdentity(&s, &r.Identity); err != nil {
		return nil, err
	}
	var err error
	if r.MLSKey, err = readMLSKey(&s); err != nil {
		return nil, err
	}
	if !s.Empty() || r.Tenant.IsZero() {
		return nil, ErrMalformed
	}
	return r, nil
}

// verify checks the proof of possession.
func (r *EnrolmentRequest) verify() error {
	tbs, err := r.tbs()
	if err != nil {
		return ErrMalformed
	}
	if r.Identity.Signing.Verify(labelled(labelEnrolmentRequest, tbs), r.Signature) != nil {
		return ErrBadProofOfPossession
	}
	return nil
}
