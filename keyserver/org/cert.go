package org

import (
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

// DeviceCertificate is the org CA's certificate of one device
// (docs/spec/org.md §Device certificates): it binds the tenant, the opaque
// user id and the device id to the device's identity keys and MLS signature
// key, for a validity period. It carries no display name or org-chart data.
type DeviceCertificate struct {
	Tenant    TenantID
	User      UserID
	Device    DeviceID
	Serial    uint64 // unique within the tenant, never reused
	NotBefore time.Time
	NotAfter  time.Time // exclusive
	Identity  keys.DeviceIdentity
	MLSKey    *MLSSignatureKey
	Issuer    [32]byte // SHA-256 of the issuing CA key's tagged encoding
	Signature []byte   // hybrid org signature over the TBS
}

//	struct {
//	    uint8  type = 0x30;
//	    uint8  version = 1;
//	    opaque tenant[16];
//	    opaque user[16];
//	    opaque device[16];
//	    uint64 serial;
//	    uint64 not_before;
//	    uint64 not_after;
//	    opaque identity_signing[33];      /* PublicKey, tag 0x01 */
//	    opaque identity_dh[33];           /* PublicKey, tag 0x02 */
//	    MLSSignatureKey mls_signature_key;
//	    opaque issuer[32];
//	} DeviceCertificateTBS;
//
//	struct {
//	    DeviceCertificateTBS tbs;
//	    opaque signature[3373];           /* over "moat/v1/org/device-certificate" || 0x00 || tbs */
//	} DeviceCertificate;

func (c *DeviceCertificate) tbs() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		if c.Tenant.IsZero() || c.User.IsZero() || c.Device.IsZero() || c.Serial == 0 || !c.NotBefore.Before(c.NotAfter) {
			b.SetError(errEncode)
		}
		b.AddUint8(typeDeviceCertificate)
		b.AddUint8(version1)
		addID(b, c.Tenant[:])
		addID(b, c.User[:])
		addID(b, c.Device[:])
		b.AddUint64(c.Serial)
		addTime(b, c.NotBefore)
		addTime(b, c.NotAfter)
		addIdentity(b, c.Identity)
		addMLSKey(b, c.MLSKey)
		b.AddBytes(c.Issuer[:])
	})
}

// Marshal returns the DeviceCertificate encoding.
func (c *DeviceCertificate) Marshal() ([]byte, error) {
	tbs, err := c.tbs()
	if err != nil {
		return nil, err
	}
	return joinSigned(tbs, c.Signature)
}

// ParseDeviceCertificate parses a DeviceCertificate encoding strictly. It
// does not verify the signature: VerifyDeviceCertificate does.
func ParseDeviceCertificate(data []byte) (*DeviceCertificate, error) {
	c, err := parseDeviceCertificate(data)
	if err != nil {
		return nil, parseErr("device certificate", err)
	}
	return c, nil
}

func parseDeviceCertificate(data []byte) (*DeviceCertificate, error) {
	tbs, sig, ok := splitSigned(data)
	if !ok {
		return nil, ErrMalformed
	}
	s := cryptobyte.String(tbs)
	c := &DeviceCertificate{Signature: clone(sig)}
	var typ, ver uint8
	if !s.ReadUint8(&typ) || typ != typeDeviceCertificate || !s.ReadUint8(&ver) || ver != version1 ||
		!readID(&s, (*[16]byte)(&c.Tenant)) || !readID(&s, (*[16]byte)(&c.User)) || !readID(&s, (*[16]byte)(&c.Device)) ||
		!s.ReadUint64(&c.Serial) || !readTime(&s, &c.NotBefore) || !readTime(&s, &c.NotAfter) {
		return nil, ErrMalformed
	}
	if err := readIdentity(&s, &c.Identity); err != nil {
		return nil, err
	}
	var err error
	if c.MLSKey, err = readMLSKey(&s); err != nil {
		return nil, err
	}
	if !s.CopyBytes(c.Issuer[:]) || !s.Empty() {
		return nil, ErrMalformed
	}
	if c.Tenant.IsZero() || c.User.IsZero() || c.Device.IsZero() || c.Serial == 0 || !c.NotBefore.Before(c.NotAfter) {
		return nil, ErrMalformed
	}
	return c, nil
}

// issueCertificate fills in the issuer and signs c with s.
func issueCertificate(s Signer, c *DeviceCertificate) error {
	c.Issuer = keyID(s.Public())
	tbs, err := c.tbs()
	if err != nil {
		return err
	}
	sig, err := signCA(s, labelDeviceCertificate, tbs)
	if err != nil {
		return err
	}
	c.Signature = sig
	return nil
}

// NoRevocations is a revocation check for callers that know of no revoked
// serial. VerifyDeviceCertificate refuses a nil check rather than assume it.
func NoRevocations(uint64) bool { return false }

// VerifyDeviceCertificate decides whether a client may use cert's keys
// (docs/spec/org.md §Certificate verification). It runs these checks in
// order and returns a *CertificateError naming the first that fails:
//
//  1. cert names tenant (else ErrWrongTenant);
//  2. cert names trustedCA as its issuer (else ErrUnknownIssuer: another
//     tenant's CA, or a CA key since rotated away);
//  3. the signature verifies under trustedCA (else ErrBadSignature);
//  4. NotBefore ≤ now (else ErrNotYetValid) and now < NotAfter (else
//     ErrExpired);
//  5. revoked(cert.Serial) is false (else ErrRevoked); a nil revoked is
//     ErrNoRevocationCheck.
//
// It does no I/O. Being certified is necessary, not sufficient: a client
// also requires the certificate in the key-transparency map.
func VerifyDeviceCertificate(cert *DeviceCertificate, trustedCA *keys.OrgPublicKey, tenant TenantID, now time.Time, revoked func(serial uint64) bool) error {
	if cert == nil || trustedCA == nil {
		return &CertificateError{Err: ErrMalformed}
	}
	fail := func(err error) error {
		return &CertificateError{Tenant: cert.Tenant, User: cert.User, Device: cert.Device, Serial: cert.Serial, Err: err}
	}
	if revoked == nil {
		return fail(ErrNoRevocationCheck)
	}
	if cert.Tenant != tenant {
		return fail(ErrWrongTenant)
	}
	if cert.Issuer != keyID(trustedCA) {
		return fail(ErrUnknownIssuer)
	}
	tbs, err := cert.tbs()
	if err != nil {
		return fail(ErrMalformed)
	}
	if verifyCA(trustedCA, labelDeviceCertificate, tbs, cert.Signature) != nil {
		return fail(ErrBadSignature)
	}
	if now.Before(cert.NotBefore) {
		return fail(ErrNotYetValid)
	}
	if !now.Before(cert.NotAfter) {
		return fail(ErrExpired)
	}
	if revoked(cert.Serial) {
		return fail(ErrRevoked)
	}
	return nil
}
