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
