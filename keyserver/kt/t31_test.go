package kt_test

import (
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/kt/kttest"
	"github.com/moat-im/moat/keyserver/org"
)

// TestT31CertificateFromAnotherCA is adversarial case T31 end to end: a
// certificate from another tenant's CA, expired or revoked, is rejected
// even inside a valid key-transparency proof.
func TestT31CertificateFromAnotherCA(t *testing.T) {
	t.Run("another tenant's CA", func(t *testing.T) {
		w := newWorld(t, 31)
		// Another organisation's directory, whose CA certifies a device
		// for alice under alice's tenant id: a different CA key.
		other := must(kttest.New(kttest.Options{Seed: 3131, Tenant: w.tenant}))
		ok(t, other.AddUser(w.alice, "Alice", at(0)))
		foreign := must(other.Enrol(w.alice, nil, at(0)))
		if foreign.Certificate.Issuer == w.a1.Certificate.Issuer {
			t.Fatal("same CA")
		}
		// The operator publishes it under alice's label, with a valid proof.
		v := must(w.d.Tenant.UserValue(w.alice))
		v.Entries = nil
		v.Certificates = insertCert(v.Certificates, foreign.Certificate)
		w.d.Inject(org.Label{User: w.alice}, must(v.Marshal()))
		must(w.d.PublishEpoch(at(2)))

		c := w.client(t)
		before := state(t, c)
		_, err := c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(3))
		wantProofError(t, err, kt.StepValue)
		var ce *org.CertificateError
		if !errors.As(err, &ce) || !errors.Is(err, org.ErrUnknownIssuer) || ce.Device != foreign.ID {
			t.Fatalf("got %v, want a CertificateError with ErrUnknownIssuer", err)
		}
		sameState(t, c, before)
		// The same through a history, as monitoring reads it.
		_, err = c.VerifyHistory(w.tenant, w.alice, kt.Position{}, must(w.d.History(w.alice, 0, 0)), at(3))
		if !errors.As(err, &ce) || !errors.Is(err, org.ErrUnknownIssuer) {
			t.Fatalf("history: got %v", err)
		}
		sameState(t, c, before)
	})

	t.Run("expired", func(t *testing.T) {
		w := newWorld(t, 32)
		later := t0.Add(w.d.Tenant.Config().CertificateLifetime + time.Hour)
		must(w.d.PublishEpoch(later))
		c := w.client(t)
		res := must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), later.Add(time.Minute)))
		if len(res.Devices) != 0 || len(res.Unusable) != 1 || !errors.Is(res.Unusable[0], org.ErrExpired) {
			t.Fatalf("devices %v, unusable %v", res.Devices, res.Unusable)
		}
	})

	t.Run("revoked", func(t *testing.T) {
		w := newWorld(t, 33)
		// Bob's b2 is revoked; the operator keeps its certificate in the
		// value next to the revocation entry.
		ok(t, w.d.Revoke(w.b2, org.ReasonCompromised, at(2)))
		v := must(w.d.Tenant.UserValue(w.bob))
		v.Certificates = insertCert(v.Certificates, w.b2.Certificate)
		w.d.Inject(org.Label{User: w.bob}, must(v.Marshal()))
		must(w.d.PublishEpoch(at(3)))
		c := w.client(t)
		res := must(c.VerifyLookup(w.tenant, w.bob, must(w.d.Lookup(w.bob, 0)), at(4)))
		if res.Device(w.b2.ID) != nil || res.Device(w.b1.ID) == nil || len(res.Unusable) != 1 || !errors.Is(res.Unusable[0], org.ErrRevoked) {
			t.Fatalf("devices %v, unusable %v", res.Devices, res.Unusable)
		}
	})

	t.Run("wrong tenant asked", func(t *testing.T) {
		w := newWorld(t, 34)
		c := w.client(t)
		if _, err := c.VerifyLookup(org.TenantID{9}, w.alice, must(w.d.Lookup(w.alice, 0)), at(2)); !errors.Is(err, org.ErrWrongTenant) {
			t.Fatalf("got %v", err)
		}
	})
}
