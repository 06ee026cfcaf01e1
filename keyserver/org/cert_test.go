package org

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestDeviceCertificateRoundTrip(t *testing.T) {
	f := newFixture(t, 1)
	_, e := f.enrol(t, uid(1), t0)
	enc := must(e.Certificate.Marshal())
	c, err := ParseDeviceCertificate(enc)
	ok(t, err)
	if again := must(c.Marshal()); !bytes.Equal(again, enc) {
		t.Fatal("round trip changed the encoding")
	}
	ok(t, VerifyDeviceCertificate(c, f.t.CA(), tid(1), t0, NoRevocations))
	if c.Tenant != tid(1) || c.User != uid(1) || c.Serial != 1 || !c.NotBefore.Equal(t0) ||
		!c.NotAfter.Equal(t0.Add(DefaultCertificateLifetime)) || c.MLSKey.Scheme() != MLSSchemeEd25519 {
		t.Fatalf("unexpected certificate fields: %+v", c)
	}
	// The certificate carries no display name.
	if bytes.Contains(enc, []byte("User ")) {
		t.Fatal("certificate contains the display name")
	}
}

func TestDeviceCertificateStrictParse(t *testing.T) {
	f := newFixture(t, 2)
	_, e := f.enrol(t, uid(1), t0)
	enc := must(e.Certificate.Marshal())
	for n := range len(enc) {
		if _, err := ParseDeviceCertificate(enc[:n]); err == nil {
			t.Fatalf("truncation to %d bytes parsed", n)
		}
	}
	// A trailing byte shifts the signature split, so the TBS gains a byte.
	if _, err := ParseDeviceCertificate(append(bytes.Clone(enc), 0)); err == nil {
		t.Fatal("trailing byte parsed")
	}
	for _, mut := range []struct {
		name string
		off  int
		val  byte
	}{{"type", 0, 0x31}, {"version", 1, 2}} {
		bad := bytes.Clone(enc)
		bad[mut.off] = mut.val
		if _, err := ParseDeviceCertificate(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v", mut.name, err)
		}
	}
}

// TestT31ForeignExpiredRevoked: a certificate from another tenant's CA,
// an expired one and a revoked one are each rejected with its own error
// (docs/shared adversarial case T31).
func TestT31ForeignExpiredRevoked(t *testing.T) {
	ours := newFixture(t, 31)
	theirs := newTenantFixture(t, 32, tid(2)) // another tenant, with its own CA
	_, mine := ours.enrol(t, uid(1), t0)
	_, foreign := theirs.enrol(t, uid(1), t0)

	check := func(name string, err, want error) {
		t.Helper()
		var ce *CertificateError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: error %v is not a *CertificateError", name, err)
		}
		if !errors.Is(err, want) {
			t.Fatalf("%s: got %v, want %v", name, err, want)
		}
		for _, other := range []error{ErrWrongTenant, ErrUnknownIssuer, ErrBadSignature, ErrExpired, ErrNotYetValid, ErrRevoked} {
			if other != want && errors.Is(err, other) {
				t.Fatalf("%s: error %v also matches %v", name, err, other)
			}
		}
	}

	// Sanity: our certificate verifies.
	ok(t, VerifyDeviceCertificate(mine.Certificate, ours.t.CA(), tid(1), t0.Add(time.Hour), NoRevocations))

	// Another tenant's certificate, checked against our CA and tenant.
	check("foreign tenant", VerifyDeviceCertificate(foreign.Certificate, ours.t.CA(), tid(1), t0, NoRevocations), ErrWrongTenant)

	// Another tenant's CA issuing a certificate that claims our tenant.
	forged := *foreign.Certificate
	forged.Tenant = tid(1)
	ok(t, issueCertificate(theirs.signer, &forged))
	check("foreign CA", VerifyDeviceCertificate(&forged, ours.t.CA(), tid(1), t0, NoRevocations), ErrUnknownIssuer)

	// The same, with our CA's issuer id copied in: the signature fails.
	forged.Issuer = keyID(ours.t.CA())
	check("foreign CA, issuer copied", VerifyDeviceCertificate(&forged, ours.t.CA(), tid(1), t0, NoRevocations), ErrBadSignature)

	// Expired: at and after not_after (exclusive bound).
	c := mine.Certificate
	check("expired", VerifyDeviceCertificate(c, ours.t.CA(), tid(1), c.NotAfter, NoRevocations), ErrExpired)
	check("expired later", VerifyDeviceCertificate(c, ours.t.CA(), tid(1), c.NotAfter.Add(time.Hour), NoRevocations), ErrExpired)
	ok(t, VerifyDeviceCertificate(c, ours.t.CA(), tid(1), c.NotAfter.Add(-time.Second), NoRevocations))
	check("not yet valid", VerifyDeviceCertificate(c, ours.t.CA(), tid(1), c.NotBefore.Add(-time.Second), NoRevocations), ErrNotYetValid)

	// Revoked, through the revocation the tenant signs.
	rev := must(ours.t.RevokeDevice(aid(1), uid(1), c.Device, ReasonLost, t0.Add(time.Hour)))
	ok(t, rev.Revocation.Verify(ours.t.CA(), tid(1)))
	check("revoked", VerifyDeviceCertificate(c, ours.t.CA(), tid(1), t0.Add(2*time.Hour), rev.Revocation.Revokes), ErrRevoked)

	// No revocation check at all is refused, not assumed empty.
	check("nil revocation check", VerifyDeviceCertificate(c, ours.t.CA(), tid(1), t0, nil), ErrNoRevocationCheck)
}

// TestCertificateEveryFieldSigned flips each field and checks that the
// signature no longer verifies.
func TestCertificateEveryFieldSigned(t *testing.T) {
	f := newFixture(t, 3)
	_, e := f.enrol(t, uid(1), t0)
	other := f.newDevice(t)
	muts := map[string]func(c *DeviceCertificate){
		"user":       func(c *DeviceCertificate) { c.User[15] ^= 1 },
		"device":     func(c *DeviceCertificate) { c.Device[15] ^= 1 },
		"serial":     func(c *DeviceCertificate) { c.Serial++ },
		"not_before": func(c *DeviceCertificate) { c.NotBefore = c.NotBefore.Add(-time.Second) },
		"not_after":  func(c *DeviceCertificate) { c.NotAfter = c.NotAfter.Add(time.Second) },
		"signing":    func(c *DeviceCertificate) { c.Identity.Signing = other.id.Signing.Public() },
		"dh":         func(c *DeviceCertificate) { c.Identity.DH = other.id.DH.Public() },
		"mls":        func(c *DeviceCertificate) { c.MLSKey = other.mls },
	}
	for name, mut := range muts {
		c := *e.Certificate
		mut(&c)
		err := VerifyDeviceCertificate(&c, f.t.CA(), tid(1), t0, NoRevocations)
		if !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: got %v, want ErrBadSignature", name, err)
		}
	}
}
