package kt_test

import (
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/kt/kttest"
	"github.com/moat-im/moat/keyserver/org"
)

// wantKeyNotInDirectory checks that err is the alarm of a key that res
// does not list, with its evidence.
func wantKeyNotInDirectory(t *testing.T, err error, res *kt.LookupResult, role kt.KeyRole, fp [32]byte, device org.DeviceID, reason string) *kt.KeyNotInDirectoryError {
	t.Helper()
	var ke *kt.KeyNotInDirectoryError
	if !errors.As(err, &ke) || !errors.Is(err, kt.ErrKeyNotInDirectory) {
		t.Fatalf("got %v, want a *KeyNotInDirectoryError", err)
	}
	if ke.Role != role || ke.Fingerprint != fp || ke.Device != device || ke.Reason != reason {
		t.Fatalf("evidence: role %v, fingerprint %x, device %v, reason %q", ke.Role, ke.Fingerprint, ke.Device, ke.Reason)
	}
	if ke.Tenant != res.Value.Tenant || ke.User != res.Value.User || ke.Label != res.Label || ke.Epoch != res.Epoch || ke.Version != res.Record.Version {
		t.Fatalf("evidence does not name the lookup: %+v", ke)
	}
	if errors.Is(err, kt.ErrProof) {
		t.Fatal("a key not in the directory is not a proof error: the lookup verified")
	}
	return ke
}

// TestT26KeyNotInKTAlarm is adversarial case T26 for keys that reach a
// client outside the directory (docs/spec/directory.md §Keys received
// elsewhere): the relay serves a prekey bundle whose identity the
// directory does not list (a device withheld from KT, a device id with
// another identity, half of the identity swapped, or another device's
// identity), or an MLS credential with a key not certified: each is an
// alarm carrying the evidence, never a certificate to use. The keys the
// directory does list pass.
func TestT26KeyNotInKTAlarm(t *testing.T) {
	w := newWorld(t, 88)
	a2 := must(w.d.Enrol(w.alice, w.a1, at(2)))
	must(w.d.PublishEpoch(at(3)))
	// Epoch 2: a3 is enrolled, but the operator publishes alice's value
	// without it; the relay still serves a3's prekeys.
	a3 := must(w.d.Enrol(w.alice, w.a1, at(4)))
	v := must(w.d.Tenant.UserValue(w.alice))
	v.Certificates = slicesDelete(v.Certificates, a3.ID)
	w.d.Inject(org.Label{User: w.alice}, must(v.Marshal()))
	must(w.d.PublishEpoch(at(5)))
	must(w.d.PublishEpoch(at(6))) // the lookup's epoch is not its record's

	c := w.client(t)
	res := must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(6)))
	if res.Epoch == res.Record.Epoch {
		t.Fatal("lookup at the record's epoch")
	}
	before := state(t, c)

	// The relay's bundle for a3 is self-consistent: its signed prekey
	// verifies under the bundle's identity.
	spk := must(keys.GenerateSignedPrekeyKey(w.d.Rand))
	sp := keys.SignSignedPrekey(1, at(6), spk.Public(), a3.Identity.Signing)
	ok(t, sp.Verify(a3.Identity.Public().Signing))

	id := func(d *kttest.Device) keys.DeviceIdentity { return d.Identity.Public() }
	evil := must(w.d.NewDeviceKeys(w.alice))
	half := keys.DeviceIdentity{Signing: a2.Identity.Signing.Public(), DH: evil.Identity.DH.Public()}
	for _, tc := range []struct {
		name     string
		device   org.DeviceID
		identity keys.DeviceIdentity
		reason   string
	}{
		{"withheld device", a3.ID, id(a3), kt.KeyNoDevice},
		{"withheld device, no id", org.DeviceID{}, id(a3), kt.KeyNoDevice},
		{"another identity under a2's id", a2.ID, id(evil), kt.KeyOtherKeys},
		{"a2's signing key with another DH key", a2.ID, half, kt.KeyOtherKeys},
		{"a2's signing key with another DH key, no id", org.DeviceID{}, half, kt.KeyNoDevice},
		{"a2's identity under a1's id", w.a1.ID, id(a2), kt.KeyOtherKeys},
		{"a device of another user", w.b1.ID, id(w.b1), kt.KeyNoDevice},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := res.CheckIdentity(tc.device, tc.identity)
			if cert != nil {
				t.Fatal("a certificate returned with the alarm")
			}
			wantKeyNotInDirectory(t, err, res, kt.KeyIdentity, kt.IdentityFingerprint(tc.identity), tc.device, tc.reason)
		})
	}
	// The keys the directory lists.
	for _, d := range []*kttest.Device{w.a1, a2} {
		for _, named := range []org.DeviceID{d.ID, {}} {
			if cert, err := res.CheckIdentity(named, id(d)); err != nil || cert.Device != d.ID || !cert.Identity.Equal(id(d)) {
				t.Fatalf("%v's identity (named %v): %v", d.ID, named, err)
			}
			if cert, err := res.CheckMLSKey(named, d.MLS); err != nil || cert.Device != d.ID {
				t.Fatalf("%v's MLS key (named %v): %v", d.ID, named, err)
			}
		}
	}
	// MLS credentials.
	_, err := res.CheckMLSKey(a2.ID, evil.MLS)
	wantKeyNotInDirectory(t, err, res, kt.KeyMLSSignature, kt.MLSKeyFingerprint(evil.MLS), a2.ID, kt.KeyOtherKeys)
	_, err = res.CheckMLSKey(org.DeviceID{}, a3.MLS)
	wantKeyNotInDirectory(t, err, res, kt.KeyMLSSignature, kt.MLSKeyFingerprint(a3.MLS), org.DeviceID{}, kt.KeyNoDevice)
	_, err = res.CheckMLSKey(w.a1.ID, a2.MLS)
	wantKeyNotInDirectory(t, err, res, kt.KeyMLSSignature, kt.MLSKeyFingerprint(a2.MLS), w.a1.ID, kt.KeyOtherKeys)
	if kt.MLSKeyFingerprint(a2.MLS) == kt.MLSKeyFingerprint(evil.MLS) || kt.IdentityFingerprint(half) == kt.IdentityFingerprint(id(a2)) {
		t.Fatal("fingerprints collide")
	}
	// Misuse.
	if _, err := res.CheckIdentity(a2.ID, keys.DeviceIdentity{}); !errors.Is(err, org.ErrInvalidArgument) {
		t.Fatalf("no identity: %v", err)
	}
	if _, err := res.CheckMLSKey(a2.ID, nil); !errors.Is(err, org.ErrInvalidArgument) {
		t.Fatalf("no MLS key: %v", err)
	}
	if _, err := (*kt.LookupResult)(nil).CheckIdentity(a2.ID, id(a2)); !errors.Is(err, org.ErrInvalidArgument) {
		t.Fatalf("no lookup: %v", err)
	}
	// Checking keys is a function of the verified result: the client's
	// state does not move.
	sameState(t, c, before)
}

// TestKeyCheckUnusableCertificate: a key whose certificate is in the
// value but not usable (revoked, or expired at the client's time) is not
// used; the alarm says why, and unwraps to the certificate error.
func TestKeyCheckUnusableCertificate(t *testing.T) {
	t.Run("revoked", func(t *testing.T) {
		// The operator keeps a revoked device's certificate in the value
		// that carries its revocation.
		w := newWorld(t, 89)
		ar := must(w.d.Enrol(w.alice, w.a1, at(2)))
		must(w.d.PublishEpoch(at(3)))
		ok(t, w.d.Revoke(ar, org.ReasonCompromised, at(4)))
		v := must(w.d.Tenant.UserValue(w.alice))
		v.Certificates = insertCert(v.Certificates, ar.Certificate)
		w.d.Inject(org.Label{User: w.alice}, must(v.Marshal()))
		must(w.d.PublishEpoch(at(5)))
		res := must(w.client(t).VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(6)))
		for _, named := range []org.DeviceID{ar.ID, {}} {
			_, err := res.CheckIdentity(named, ar.Identity.Public())
			ke := wantKeyNotInDirectory(t, err, res, kt.KeyIdentity, kt.IdentityFingerprint(ar.Identity.Public()), named, kt.KeyUnusable)
			if !errors.Is(err, org.ErrRevoked) || ke.Unusable == nil || ke.Unusable.Serial != ar.Certificate.Serial {
				t.Fatalf("got %v", err)
			}
		}
		if _, err := res.CheckIdentity(w.a1.ID, w.a1.Identity.Public()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		w := newWorld(t, 90)
		later := at(0).Add(org.DefaultCertificateLifetime + time.Hour)
		must(w.d.PublishEpoch(later))
		res := must(w.client(t).VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), later))
		_, err := res.CheckMLSKey(w.a1.ID, w.a1.MLS)
		wantKeyNotInDirectory(t, err, res, kt.KeyMLSSignature, kt.MLSKeyFingerprint(w.a1.MLS), w.a1.ID, kt.KeyUnusable)
		if !errors.Is(err, org.ErrExpired) {
			t.Fatalf("got %v", err)
		}
	})
}

// slicesDelete returns cs without the certificate of device.
func slicesDelete(cs []*org.DeviceCertificate, device org.DeviceID) []*org.DeviceCertificate {
	var out []*org.DeviceCertificate
	for _, c := range cs {
		if c.Device != device {
			out = append(out, c)
		}
	}
	return out
}
