package org

// Shared fixtures for this package's tests.

import (
	"crypto/mlkem"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/vrf"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func testRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:8], seed)
	copy(s[8:], "moat org test seed ............")
	return rand.NewChaCha8(s)
}

// must returns v, or panics (failing the test) if err is not nil.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func tid(b byte) TenantID     { return TenantID{0x7e, b} }
func uid(b byte) UserID       { return UserID{0x05, b} }
func did(b byte) DepartmentID { return DepartmentID{0xde, b} }
func aid(b byte) AdminID      { return AdminID{0xad, b} }

// fixture is a tenant with three admins (two hybrid, one Ed25519),
// threshold 2, and a trust bundle with two witnesses.
type fixture struct {
	rnd    *rand.ChaCha8
	signer *MemorySigner
	admins []*AdminPrivateKey
	log    *keys.LogPrivateKey
	vrf    *vrf.PrivateKey
	t      *Tenant
}

func newWitness(t testing.TB, rnd *rand.ChaCha8, name string, pq bool) WitnessKey {
	seed := make([]byte, 32)
	rnd.Read(seed)
	k := must(NewAdminPrivateKey(AdminID{1}, AdminEd25519, seed))
	w := WitnessKey{Name: name, Ed25519: k.Public().Raw()}
	if pq {
		pk, _, err := mldsa44.GenerateKey(rnd)
		ok(t, err)
		w.MLDSA44 = pk.Bytes()
	}
	return w
}

func newFixture(t testing.TB, seed uint64) *fixture { return newTenantFixture(t, seed, tid(1)) }

func newTenantFixture(t testing.TB, seed uint64, id TenantID) *fixture {
	t.Helper()
	f := &fixture{rnd: testRand(seed)}
	f.signer = must(GenerateMemorySigner(f.rnd))
	f.log = must(keys.GenerateLogKey(f.rnd))
	f.vrf = must(vrf.GenerateKey(f.rnd))
	var pubs []*AdminKey
	for i, scheme := range []AdminScheme{AdminHybrid, AdminEd25519, AdminHybrid} {
		k := must(GenerateAdminKey(f.rnd, aid(byte(i+1)), scheme))
		f.admins = append(f.admins, k)
		pubs = append(pubs, k.Public())
	}
	ws := WitnessSet{Witnesses: []WitnessKey{
		newWitness(t, f.rnd, "witness.example.org/w2", false),
		newWitness(t, f.rnd, "witness.example.com/w1", true),
	}, Quorum: 2}
	f.t = must(NewTenant(TenantParams{
		ID: id, Admins: pubs, Threshold: 2,
		LogOrigin: "moat.example/keys/" + id.String(), Log: f.log.Public(), VRF: f.vrf.Public(), Witnesses: ws,
	}, f.signer, t0))
	return f
}

// testDevice is a test device's private keys.
type testDevice struct {
	id  *keys.DeviceIdentityPrivate
	mls *MLSSignatureKey
}

func (f *fixture) newDevice(t testing.TB) *testDevice {
	t.Helper()
	id := must(keys.GenerateDeviceIdentity(f.rnd))
	seed := make([]byte, 32)
	f.rnd.Read(seed)
	mk := must(NewAdminPrivateKey(AdminID{1}, AdminEd25519, seed)) // any Ed25519 key
	return &testDevice{id: id, mls: must(NewMLSSignatureKey(MLSSchemeEd25519, mk.Public().Raw()))}
}

func (f *fixture) code(t testing.TB, u UserID, now time.Time) *EnrolmentCode {
	t.Helper()
	return must(f.t.IssueEnrolmentCode(f.rnd, aid(1), u, 24*time.Hour, now))
}

func (f *fixture) request(t testing.TB, c *EnrolmentCode, d *testDevice) *EnrolmentRequest {
	t.Helper()
	return must(NewEnrolmentRequest(c, d.id, d.mls))
}

// enrol adds a user (if new) and enrols a first device for it.
func (f *fixture) enrol(t testing.TB, u UserID, now time.Time) (*testDevice, *Enrolment) {
	t.Helper()
	if _, exists := f.t.users[u]; !exists {
		must(f.t.AddUser(aid(1), u, "User "+u.String()[:4], DepartmentID{}, now))
	}
	d := f.newDevice(t)
	c := f.code(t, u, now)
	e := must(f.t.RedeemEnrolmentCode(c, f.request(t, c, d), nil, now))
	return d, e
}

func stateBytes(t testing.TB, tn *Tenant) []byte {
	t.Helper()
	return must(tn.MarshalBinary())
}

func sha256Of(b []byte) [32]byte { return sha256Sum(b) }

// testXWingKey returns a valid X-Wing public key: an ML-KEM-768
// encapsulation key followed by an X25519 key.
func testXWingKey(t testing.TB, f *fixture) []byte {
	seed := make([]byte, 64)
	f.rnd.Read(seed)
	dk := must(mlkem.NewDecapsulationKey768(seed))
	x := must(keys.GenerateIdentityDHKey(f.rnd))
	return append(dk.EncapsulationKey().Bytes(), x.Public().Raw()...)
}
