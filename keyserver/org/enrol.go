package org

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

// EnrolmentCode is a single-use code an admin hands to a user to enrol a
// new device (docs/spec/org.md §Enrolment codes). It names the tenant and
// the code, carries a 128-bit secret, the code's issue time, and the
// fingerprint of the tenant's trust bundle, against which the new device
// checks the trust anchors the directory sends it (§Trust bootstrap). The
// issue time is the first input of the device's time floor (§Time floor
// at enrolment).
//
// The secret never appears in String or any fmt output; Text returns the
// full code for display to its user.
type EnrolmentCode struct {
	Tenant TenantID
	ID     CodeID
	secret *[secretSize]byte // behind a pointer, so fmt never reaches it
	// IssuedAt is the code's issue time, whole seconds. It is zero only in
	// a version 1 code, which has none: such codes are still parsed, and
	// marshal as version 1; codes are issued as version 2.
	IssuedAt    time.Time
	Fingerprint [32]byte // TrustBundle.Fingerprint
}

// secretSize is the size of an enrolment code's secret: 128 bits, above
// the 100 bits docs/spec/org.md §Enrolment codes requires.
const secretSize = 16

// EnrolmentCodePrefix starts the text encoding of an enrolment code as
// issued (version 2). EnrolmentCodePrefixV1 starts that of a version 1
// code, which has no issue time.
const (
	EnrolmentCodePrefix   = "moat-enrol2:"
	EnrolmentCodePrefixV1 = "moat-enrol1:"
)

const (
	enrolmentCodeSizeV1 = 2 + idSize + idSize + secretSize + 32 // 82
	enrolmentCodeSize   = enrolmentCodeSizeV1 + 8               // 90
	version2            = 2
	version3            = 3
)

// Format prints the code without its secret, whatever the verb.
func (c EnrolmentCode) Format(f fmt.State, _ rune) {
	if c.IssuedAt.IsZero() {
		_, _ = fmt.Fprintf(f, "%s[code %s of tenant %s, secret redacted]", EnrolmentCodePrefixV1, c.ID, c.Tenant)
		return
	}
	_, _ = fmt.Fprintf(f, "%s[code %s of tenant %s issued %s, secret redacted]", EnrolmentCodePrefix, c.ID, c.Tenant,
		c.IssuedAt.UTC().Format(time.RFC3339))
}

// String returns the code without its secret.
func (c EnrolmentCode) String() string { return fmt.Sprint(c) }

//	struct {
//	    uint8  type = 0x32;
//	    uint8  version = 2;
//	    opaque tenant[16];
//	    opaque code_id[16];
//	    opaque secret[16];
//	    uint64 issued_at;                 /* ≥ 1 */
//	    opaque trust_fingerprint[32];
//	} EnrolmentCode;                      /* 90 bytes */
//
// Version 1 is the same without issued_at (82 bytes).

// Marshal returns the binary EnrolmentCode encoding: version 2, or
// version 1 for a code without an issue time. It contains the secret.
func (c *EnrolmentCode) Marshal() []byte {
	v1 := c.IssuedAt.IsZero()
	out := make([]byte, 0, enrolmentCodeSize)
	if v1 {
		out = append(out, typeEnrolmentCode, version1)
	} else {
		out = append(out, typeEnrolmentCode, version2)
	}
	out = append(out, c.Tenant[:]...)
	out = append(out, c.ID[:]...)
	out = append(out, c.secretBytes()...)
	if !v1 {
		out = binary.BigEndian.AppendUint64(out, uint64(max(c.IssuedAt.Unix(), 1)))
	}
	return append(out, c.Fingerprint[:]...)
}

// Text returns the text encoding: "moat-enrol2:" ("moat-enrol1:" for a
// version 1 code) followed by the unpadded base64url encoding of the
// binary encoding. It contains the secret.
func (c *EnrolmentCode) Text() string {
	prefix := EnrolmentCodePrefix
	if c.IssuedAt.IsZero() {
		prefix = EnrolmentCodePrefixV1
	}
	return prefix + base64.RawURLEncoding.EncodeToString(c.Marshal())
}

// ParseEnrolmentCode parses the binary encoding, version 2 or 1, strictly.
func ParseEnrolmentCode(data []byte) (*EnrolmentCode, error) {
	s := cryptobyte.String(data)
	var typ, ver uint8
	c := &EnrolmentCode{secret: new([secretSize]byte)}
	if !s.ReadUint8(&typ) || typ != typeEnrolmentCode || !s.ReadUint8(&ver) || (ver != version1 && ver != version2) ||
		!readID(&s, (*[16]byte)(&c.Tenant)) || !readID(&s, (*[16]byte)(&c.ID)) || !s.CopyBytes(c.secret[:]) ||
		(ver == version2 && (!readTime(&s, &c.IssuedAt) || c.IssuedAt.Unix() < 1)) ||
		!s.CopyBytes(c.Fingerprint[:]) || !s.Empty() || c.Tenant.IsZero() {
		return nil, &parseError{what: "enrolment code"}
	}
	return c, nil
}

// ParseEnrolmentCodeText parses the text encoding strictly: a prefix,
// exactly 120 base64url characters after "moat-enrol2:" (110 after
// "moat-enrol1:") encoding a code of that version, no padding, zero
// trailing bits, nothing else. User interfaces trim the white space that
// copying and pasting adds before calling it.
func ParseEnrolmentCodeText(text string) (*EnrolmentCode, error) {
	size, ver := enrolmentCodeSize, uint8(version2)
	body, ok := strings.CutPrefix(text, EnrolmentCodePrefix)
	if !ok {
		size, ver = enrolmentCodeSizeV1, version1
		body, ok = strings.CutPrefix(text, EnrolmentCodePrefixV1)
	}
	if !ok || len(body) != base64.RawURLEncoding.EncodedLen(size) {
		return nil, &parseError{what: "enrolment code"}
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil || len(raw) < 2 || raw[1] != ver {
		return nil, &parseError{what: "enrolment code"}
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

// newEnrolmentCode draws a code id and secret from rand, for a code issued
// at now (whole seconds, not before 1970-01-01T00:00:01Z).
func newEnrolmentCode(rand io.Reader, tenant TenantID, fp [32]byte, now time.Time) (*EnrolmentCode, error) {
	c := &EnrolmentCode{Tenant: tenant, Fingerprint: fp, IssuedAt: now, secret: new([secretSize]byte)}
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

// VerifyEnrolment is a new device's check of the directory's answer to
// its enrolment (§Trust bootstrap, §Time floor at enrolment), before it
// pins or uses anything in it. code is the device's enrolment code, req
// the request it sent, bundle and cert the trust bundle and device
// certificate the directory answered. In order:
//
//  1. CheckTrustBundle(code, bundle): the fingerprint, the tenant, the
//     bundle's own signature;
//  2. cert is a certificate of the code's tenant by the bundle's CA, with
//     a valid signature (a *CertificateError otherwise);
//  3. cert certifies exactly req's identity signing key, identity DH key
//     and MLS signature key, under the device id derived from them
//     (ErrWrongSubject): an answer to another enrolment is refused;
//  4. for a version 2 code, cert.NotBefore is not before the code's issue
//     time (ErrStaleEnrolment): no certificate issued before the code
//     exists answers it.
//
// The certificate's validity period is not checked against a clock: the
// caller derives its time floor from cert.NotBefore and the code's issue
// time and judges its clock against that (keyserver/kt.Enrol).
func VerifyEnrolment(code *EnrolmentCode, req *EnrolmentRequest, bundle, cert []byte) (*TrustBundle, *DeviceCertificate, error) {
	if code == nil || req == nil {
		return nil, nil, fmt.Errorf("org: enrolment: %w", ErrInvalidArgument)
	}
	if req.Tenant != code.Tenant || req.Code != code.ID {
		return nil, nil, fmt.Errorf("org: enrolment: request names another code: %w", ErrInvalidArgument)
	}
	tb, err := CheckTrustBundle(code, bundle)
	if err != nil {
		return nil, nil, fmt.Errorf("org: enrolment: trust bundle: %w", err)
	}
	c, err := ParseDeviceCertificate(cert)
	if err != nil {
		return nil, nil, fmt.Errorf("org: enrolment: %w", err)
	}
	// At its own not_before the validity period holds, so this checks the
	// tenant, the issuer and the signature only.
	if err := VerifyDeviceCertificate(c, tb.CA, code.Tenant, c.NotBefore, NoRevocations); err != nil {
		return nil, nil, fmt.Errorf("org: enrolment: %w", err)
	}
	if !bytes.Equal(c.Identity.Signing.Bytes(), req.Identity.Signing.Bytes()) ||
		!bytes.Equal(c.Identity.DH.Bytes(), req.Identity.DH.Bytes()) || !c.MLSKey.Equal(req.MLSKey) ||
		c.Device != deviceID(code.Tenant, c.User, req.Identity.Signing) {
		return nil, nil, fmt.Errorf("org: enrolment: certificate of device %s: %w", c.Device, ErrWrongSubject)
	}
	if !code.IssuedAt.IsZero() && c.NotBefore.Before(code.IssuedAt) {
		return nil, nil, fmt.Errorf("org: enrolment: certificate issued %v, code issued %v: %w",
			c.NotBefore.UTC(), code.IssuedAt.UTC(), ErrStaleEnrolment)
	}
	return tb, c, nil
}
