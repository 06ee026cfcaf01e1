package org

import (
	"bytes"
	"errors"
	"testing"

	"github.com/moat-im/moat/crypto/vrf"
)

// vrfKeyOffset returns the offset of vrf_key in a TrustBundle encoding
// (docs/spec/org.md §Trust bundles).
func vrfKeyOffset(b *TrustBundle) int {
	return 1 + 1 + 16 + 8 + 8 + hybridTagged + 1 + len(b.LogOrigin) + hybridTagged
}

// TestTrustBundleVRFKey: the bundle carries the directory's VRF key, which
// round-trips, is covered by the fingerprint and the signature, and is
// validated on parsing (RFC 9381 validate_key: no small-order point, no
// non-canonical encoding).
func TestTrustBundleVRFKey(t *testing.T) {
	f := newFixture(t, 61)
	tb := f.t.TrustBundle()
	enc := must(tb.Marshal())
	got := must(ParseTrustBundle(enc))
	if !got.VRF.Equal(f.vrf.Public()) {
		t.Fatal("VRF key did not round-trip")
	}
	off := vrfKeyOffset(tb)
	if !bytes.Equal(enc[off:off+vrf.PublicKeySize], f.vrf.Public().Bytes()) {
		t.Fatal("vrf_key not where the spec puts it")
	}

	// Another VRF key changes the fingerprint and breaks the signature.
	other := *tb
	other.VRF = must(vrf.GenerateKey(f.rnd)).Public()
	if must(other.Fingerprint()) == must(tb.Fingerprint()) {
		t.Fatal("fingerprint does not cover the VRF key")
	}
	if err := other.Verify(tb.CA, tb.Tenant); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("bundle with a swapped VRF key: got %v", err)
	}

	// A bundle without a VRF key does not encode.
	none := *tb
	none.VRF = nil
	if _, err := none.Marshal(); err == nil {
		t.Fatal("bundle without a VRF key encoded")
	}

	// Invalid keys are KeyErrors wrapping the crypto/vrf error.
	bad := map[string][]byte{
		"identity (small order)": append([]byte{1}, make([]byte, 31)...),
		"y = p (non-canonical)": {0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	}
	for name, k := range bad {
		m := bytes.Clone(enc)
		copy(m[off:], k)
		_, err := ParseTrustBundle(m)
		var ke *KeyError
		if !errors.As(err, &ke) || !errors.Is(err, vrf.ErrInvalidKey) {
			t.Errorf("%s: got %v, want a KeyError wrapping vrf.ErrInvalidKey", name, err)
		}
	}
}

// TestWitnessQuorumMajority: a witness quorum must be a strict majority of
// the witness set (§Witness keys), so that two disjoint groups of
// witnesses cannot each cosign one side of a split view. A tenant, a
// proposed witness set and a parsed trust bundle with a quorum of at most
// half the witnesses are refused with ErrWitnessQuorum; 1 of 1, 2 of 2
// and 2 of 3 are accepted.
func TestWitnessQuorumMajority(t *testing.T) {
	f := newFixture(t, 66)
	rnd := testRand(67)
	ws3 := []WitnessKey{
		newWitness(t, rnd, "witness.example/a", false),
		newWitness(t, rnd, "witness.example/b", false),
		newWitness(t, rnd, "witness.example/c", false),
	}
	for _, c := range []struct{ n, q int }{{1, 1}, {2, 2}, {3, 2}, {3, 3}, {2, 1}, {3, 1}} {
		ws := WitnessSet{Witnesses: ws3[:c.n], Quorum: c.q}
		majority := 2*c.q > c.n
		_, err := f.t.ProposeWitnesses(ws, t0)
		if majority != (err == nil) || (!majority && !errors.Is(err, ErrWitnessQuorum)) {
			t.Errorf("propose %d of %d: %v", c.q, c.n, err)
		}
		var admins []*AdminKey
		for _, a := range f.admins {
			admins = append(admins, a.Public())
		}
		_, err = NewTenant(TenantParams{ID: tid(9), Admins: admins, Threshold: 2, LogOrigin: "moat.example/keys/q",
			Log: f.log.Public(), VRF: f.vrf.Public(), Witnesses: ws}, f.signer, t0)
		if majority != (err == nil) || (!majority && !errors.Is(err, ErrWitnessQuorum)) {
			t.Errorf("tenant %d of %d: %v", c.q, c.n, err)
		}
	}
	// A bundle whose quorum byte says 1 of its 2 witnesses does not parse.
	enc := must(f.t.TrustBundle().Marshal())
	must(ParseTrustBundle(enc))
	if n, q := len(f.t.TrustBundle().Witnesses.Witnesses), enc[len(enc)-SignatureSize-1]; n != 2 || q != 2 {
		t.Fatalf("fixture: quorum byte %d of %d witnesses", q, n)
	}
	bad := bytes.Clone(enc)
	bad[len(bad)-SignatureSize-1] = 1
	if _, err := ParseTrustBundle(bad); !errors.Is(err, ErrWitnessQuorum) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("bundle with quorum 1 of 2: %v", err)
	}
}
