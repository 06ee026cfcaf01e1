package org

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestEnrolmentCodeEncoding(t *testing.T) {
	f := newFixture(t, 10)
	must(f.t.AddUser(aid(1), uid(1), "Alice", DepartmentID{}, t0))
	c := f.code(t, uid(1), t0)
	if secretSize*8 < 100 {
		t.Fatal("enrolment secret below 100 bits")
	}
	text := c.Text()
	if !strings.HasPrefix(text, EnrolmentCodePrefix) || len(text) != len(EnrolmentCodePrefix)+110 {
		t.Fatalf("unexpected text %q", text)
	}
	if _, err := ParseEnrolmentCodeText(" " + text); err == nil {
		t.Fatal("white space accepted")
	}
	c2, err := ParseEnrolmentCodeText(text)
	ok(t, err)
	if c2.Text() != text || !bytes.Equal(c2.Marshal(), c.Marshal()) {
		t.Fatal("text round trip changed the code")
	}
	// The secret never prints.
	secretText := text[len(EnrolmentCodePrefix):]
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		for _, v := range []any{c, *c, []*EnrolmentCode{c}, struct{ C *EnrolmentCode }{c}} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, secretText) || bytes.Contains([]byte(out), c.secret[:]) {
				t.Errorf("fmt %s of %T reveals the secret: %s", verb, v, out)
			}
		}
	}
	if strings.Contains(c.String(), secretText) {
		t.Error("String reveals the secret")
	}
	// Strictness: wrong prefix, wrong length, padding, non-canonical trailing bits.
	for _, bad := range []string{
		"moat-enrol2:" + secretText,
		text[:len(text)-1],
		text + "A",
		text + "=",
		text[:len(text)-1] + "B", // 82 bytes → last char carries 4 unused bits
	} {
		if _, err := ParseEnrolmentCodeText(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: got %v", bad, err)
		}
	}
}

func TestEnrolmentCodeReuseRefused(t *testing.T) {
	f := newFixture(t, 11)
	must(f.t.AddUser(aid(1), uid(1), "Alice", DepartmentID{}, t0))
	c := f.code(t, uid(1), t0)
	d := f.newDevice(t)
	must(f.t.RedeemEnrolmentCode(c, f.request(t, c, d), nil, t0))
	// The same code again, for another device: single use.
	d2 := f.newDevice(t)
	before := stateBytes(t, f.t)
	if _, err := f.t.RedeemEnrolmentCode(c, f.request(t, c, d2), nil, t0); !errors.Is(err, ErrCodeUsed) {
		t.Fatalf("reuse: got %v, want ErrCodeUsed", err)
	}
	if !bytes.Equal(before, stateBytes(t, f.t)) {
		t.Fatal("refused reuse changed the state")
	}
}

func TestEnrolmentCodeExpiry(t *testing.T) {
	f := newFixture(t, 12)
	must(f.t.AddUser(aid(1), uid(1), "Alice", DepartmentID{}, t0))
	c := must(f.t.IssueEnrolmentCode(f.rnd, aid(1), uid(1), time.Hour, t0))
	d := f.newDevice(t)
	if _, err := f.t.RedeemEnrolmentCode(c, f.request(t, c, d), nil, t0.Add(time.Hour)); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("at expiry: got %v, want ErrCodeExpired", err)
	}
	must(f.t.RedeemEnrolmentCode(c, f.request(t, c, d), nil, t0.Add(time.Hour-time.Second)))

	// Lifetimes beyond the maximum are refused.
	if _, err := f.t.IssueEnrolmentCode(f.rnd, aid(1), uid(1), DefaultMaxCodeLifetime+time.Second, t0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("long lifetime: got %v", err)
	}
	// Expired codes are forgotten when the next code is issued, and then
	// refused like unknown ones.
	c3 := must(f.t.IssueEnrolmentCode(f.rnd, aid(1), uid(1), time.Hour, t0))
	f.code(t, uid(1), t0.Add(2*time.Hour))
	if _, err := f.t.RedeemEnrolmentCode(c3, f.request(t, c3, f.newDevice(t)), nil, t0.Add(2*time.Hour)); !errors.Is(err, ErrBadEnrolmentCode) {
		t.Fatalf("pruned code: got %v", err)
	}
}

// wrongSecret returns c with a different secret.
func wrongSecret(c *EnrolmentCode, i byte) *EnrolmentCode {
	w := *c
	w.secret = new([secretSize]byte)
	*w.secret = *c.secret
	w.secret[0] ^= 1 + i
	return &w
}

func TestEnrolmentCodeGuessingLimit(t *testing.T) {
	f := newFixture(t, 13)
	must(f.t.AddUser(aid(1), uid(1), "Alice", DepartmentID{}, t0))
	c := f.code(t, uid(1), t0)
	d := f.newDevice(t)
	req := f.request(t, c, d)
	n := f.t.Config().CodeFailureLimit
	for i := range n {
		if _, err := f.t.RedeemEnrolmentCode(wrongSecret(c, byte(i)), req, nil, t0); !errors.Is(err, ErrBadEnrolmentCode) {
			t.Fatalf("guess %d: got %v, want ErrBadEnrolmentCode", i, err)
		}
	}
	// Locked: even the right secret is refused, and stays refused.
	for i := range 3 {
		if _, err := f.t.RedeemEnrolmentCode(c, req, nil, t0.Add(time.Duration(i)*time.Hour)); !errors.Is(err, ErrCodeLocked) {
			t.Fatalf("after %d failures, attempt %d: got %v, want ErrCodeLocked", n, i, err)
		}
	}
	// The lock survives a save and restore.
	t2 := must(UnmarshalTenant(stateBytes(t, f.t), f.signer))
	if _, err := t2.RedeemEnrolmentCode(c, req, nil, t0); !errors.Is(err, ErrCodeLocked) {
		t.Fatalf("after restore: got %v, want ErrCodeLocked", err)
	}
	// Another code for the same user still works.
	c2 := f.code(t, uid(1), t0)
	must(f.t.RedeemEnrolmentCode(c2, f.request(t, c2, d), nil, t0))
}

func TestEnrolmentTenantGuessingLimit(t *testing.T) {
	f := newFixture(t, 14)
	must(f.t.AddUser(aid(1), uid(1), "Alice", DepartmentID{}, t0))
	limit := 7
	f.t.config.TenantFailureLimit = limit
	c := f.code(t, uid(1), t0)
	req := f.request(t, c, f.newDevice(t))
	// Guesses spread over many codes (unknown ids), each under the per-code limit.
	for i := range limit {
		guess := *c
		guess.ID[0] ^= byte(i + 1)
		greq := *req
		greq.Code = guess.ID
		if _, err := f.t.RedeemEnrolmentCode(&guess, &greq, nil, t0.Add(time.Duration(i)*time.Second)); !errors.Is(err, ErrBadEnrolmentCode) {
			t.Fatalf("guess %d: got %v", i, err)
		}
	}
	// The tenant is locked for the rest of the window, even for a valid code.
	if _, err := f.t.RedeemEnrolmentCode(c, req, nil, t0.Add(time.Minute)); !errors.Is(err, ErrTenantLocked) {
		t.Fatalf("locked tenant: got %v, want ErrTenantLocked", err)
	}
	// After the window, the valid code works.
	must(f.t.RedeemEnrolmentCode(c, req, nil, t0.Add(DefaultTenantFailureWindow)))
}

// TestEnrolmentConstantTimeCompare checks that redemption compares the
// secret only through secretEqual (subtle.ConstantTimeCompare), and only
// over hashes: the stored hash and the hash of the presented secret.
func TestEnrolmentConstantTimeCompare(t *testing.T) {
	f := newFixture(t, 15)
	must(f.t.AddUser(aid(1), uid(1), "Alice", DepartmentID{}, t0))
	c := f.code(t, uid(1), t0)
	req := f.request(t, c, f.newDevice(t))
	stored := f.t.codes[c.ID].hash

	orig := secretEqual
	defer func() { secretEqual = orig }()
	var calls [][2][]byte
	secretEqual = func(a, b []byte) bool {
		calls = append(calls, [2][]byte{bytes.Clone(a), bytes.Clone(b)})
		return orig(a, b)
	}
	bad := wrongSecret(c, 0)
	if _, err := f.t.RedeemEnrolmentCode(bad, req, nil, t0); !errors.Is(err, ErrBadEnrolmentCode) {
		t.Fatal(err)
	}
	must(f.t.RedeemEnrolmentCode(c, req, nil, t0))
	if len(calls) != 2 {
		t.Fatalf("secretEqual called %d times, want 2", len(calls))
	}
	wantBad := secretHash(tid(1), c.ID, bad.secret[:])
	wantGood := secretHash(tid(1), c.ID, c.secret[:])
	for i, want := range [][32]byte{wantBad, wantGood} {
		if !bytes.Equal(calls[i][0], want[:]) || !bytes.Equal(calls[i][1], stored[:]) {
			t.Fatalf("call %d compared something other than the two hashes", i)
		}
	}
	// The secret itself is never stored.
	if bytes.Contains(stateBytes(t, f.t), c.secret[:]) {
		t.Fatal("tenant state contains the code's secret")
	}
}

func TestEnrolmentProofOfPossession(t *testing.T) {
	f := newFixture(t, 16)
	must(f.t.AddUser(aid(1), uid(1), "Alice", DepartmentID{}, t0))
	c := f.code(t, uid(1), t0)
	d, other := f.newDevice(t), f.newDevice(t)
	req := f.request(t, c, d)
	req.Identity.DH = other.id.DH.Public() // keys swapped after signing
	if _, err := f.t.RedeemEnrolmentCode(c, req, nil, t0); !errors.Is(err, ErrBadProofOfPossession) {
		t.Fatalf("got %v", err)
	}
	// A key certified once is never certified again, for any user.
	must(f.t.RedeemEnrolmentCode(c, f.request(t, c, d), nil, t0))
	must(f.t.AddUser(aid(1), uid(2), "Bob", DepartmentID{}, t0))
	c2 := f.code(t, uid(2), t0)
	if _, err := f.t.RedeemEnrolmentCode(c2, f.request(t, c2, d), nil, t0); !errors.Is(err, ErrKeyReused) {
		t.Fatalf("reused key: got %v", err)
	}
}

// TestTrustBootstrap: the new device accepts the trust bundle matching its
// code's fingerprint and refuses any other.
func TestTrustBootstrap(t *testing.T) {
	f := newFixture(t, 17)
	must(f.t.AddUser(aid(1), uid(1), "Alice", DepartmentID{}, t0))
	c := f.code(t, uid(1), t0)
	// The device only has the text of its code.
	dc := must(ParseEnrolmentCodeText(c.Text()))
	bundle := must(f.t.TrustBundle().Marshal())
	tb, err := CheckTrustBundle(dc, bundle)
	ok(t, err)
	if !tb.CA.Equal(f.t.CA()) || tb.Witnesses.Quorum != 2 {
		t.Fatal("wrong bundle contents")
	}
	// A directory that substitutes any trust anchor is caught.
	evil := newFixture(t, 18)
	muts := map[string]func(b *TrustBundle){
		"ca":      func(b *TrustBundle) { b.CA = evil.t.CA() },
		"log":     func(b *TrustBundle) { b.Log = evil.log.Public() },
		"origin":  func(b *TrustBundle) { b.LogOrigin = "evil.example/log" },
		"vrf":     func(b *TrustBundle) { b.VRF = evil.vrf.Public() },
		"quorum":  func(b *TrustBundle) { b.Witnesses.Quorum = 1 },
		"witness": func(b *TrustBundle) { b.Witnesses = evil.t.TrustBundle().Witnesses },
	}
	for name, mut := range muts {
		b := *f.t.TrustBundle()
		mut(&b)
		// Re-signed by whoever controls the new CA key.
		s := Signer(f.signer)
		if name == "ca" {
			s = evil.signer
		}
		ok(t, signTrustBundle(s, &b))
		if _, err := CheckTrustBundle(dc, must(b.Marshal())); !errors.Is(err, ErrFingerprintMismatch) {
			t.Errorf("%s: got %v, want ErrFingerprintMismatch", name, err)
		}
	}
	// A bundle with the right body but a bad signature is refused too.
	b := *f.t.TrustBundle()
	b.Signature = bytes.Clone(b.Signature)
	b.Signature[0] ^= 1
	if _, err := CheckTrustBundle(dc, must(b.Marshal())); !errors.Is(err, ErrBadSignature) {
		t.Errorf("bad signature: got %v", err)
	}
}

// TestEnrolmentCodeSpecExample checks the example of docs/spec/org.md
// §Enrolment codes.
func TestEnrolmentCodeSpecExample(t *testing.T) {
	const (
		binHex = "32017e010000000000000000000000000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
		text   = "moat-enrol1:MgF-AQAAAAAAAAAAAAAAAAAAAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-Pw"
		hash   = "3b6d86288b8c30229294aac5855b2f6b06dea440067ffa79168c1b370b3f85d3"
	)
	c, err := ParseEnrolmentCodeText(text)
	ok(t, err)
	if fmt.Sprintf("%x", c.Marshal()) != binHex || c.Text() != text {
		t.Fatal("example encoding mismatch")
	}
	if h := secretHash(c.Tenant, c.ID, c.secretBytes()); fmt.Sprintf("%x", h) != hash {
		t.Fatalf("secret hash %x", h)
	}
}
