package org

import (
	"bytes"
	"encoding/base64"
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
	if !strings.HasPrefix(text, EnrolmentCodePrefix) || len(text) != len(EnrolmentCodePrefix)+120 || !c.IssuedAt.Equal(t0) {
		t.Fatalf("unexpected text %q", text)
	}
	if _, err := ParseEnrolmentCodeText(" " + text); err == nil {
		t.Fatal("white space accepted")
	}
	c2, err := ParseEnrolmentCodeText(text)
	ok(t, err)
	if c2.Text() != text || !bytes.Equal(c2.Marshal(), c.Marshal()) || !c2.IssuedAt.Equal(t0) {
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
	// A version 1 code (no issue time) still parses and round-trips.
	v1 := *c
	v1.IssuedAt = time.Time{}
	v1Text := v1.Text()
	if !strings.HasPrefix(v1Text, EnrolmentCodePrefixV1) || len(v1Text) != len(EnrolmentCodePrefixV1)+110 || len(v1.Marshal()) != 82 {
		t.Fatalf("unexpected version 1 text %q", v1Text)
	}
	c1, err := ParseEnrolmentCodeText(v1Text)
	ok(t, err)
	if c1.Text() != v1Text || !c1.IssuedAt.IsZero() || c1.ID != c.ID {
		t.Fatal("version 1 round trip")
	}
	// Strictness: wrong prefix, wrong length, padding, non-canonical
	// trailing bits, a body of one version under the other's prefix, an
	// issue time of zero.
	v1Body := v1Text[len(EnrolmentCodePrefixV1):]
	zeroTime := c.Marshal()
	clear(zeroTime[50:58])
	for _, bad := range []string{
		"moat-enrol3:" + secretText,
		EnrolmentCodePrefixV1 + secretText,
		EnrolmentCodePrefix + v1Body,
		text[:len(text)-1],
		text + "A",
		text + "=",
		v1Text[:len(v1Text)-1] + "B", // 82 bytes → the last char carries 4 unused bits (90 bytes have none)
		EnrolmentCodePrefix + base64.RawURLEncoding.EncodeToString(zeroTime),
	} {
		if _, err := ParseEnrolmentCodeText(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: got %v", bad, err)
		}
	}
	for name, b := range map[string][]byte{
		"version 3":       append([]byte{typeEnrolmentCode, 3}, c.Marshal()[2:]...),
		"v2 without time": append([]byte{typeEnrolmentCode, version2}, v1.Marshal()[2:]...),
		"v1 with time":    append([]byte{typeEnrolmentCode, version1}, c.Marshal()[2:]...),
		"zero time":       zeroTime,
		"time 2^63":       func() []byte { b := c.Marshal(); b[50] = 0x80; return b }(),
	} {
		if _, err := ParseEnrolmentCode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

// TestEnrolmentCodeIssueTime: the directory redeems a code only with the
// issue time it was issued with; the wrong one is not a guess (the secret
// was right), so it is not counted, and the state is untouched. A version
// 1 code, which has none, is redeemed on its secret.
func TestEnrolmentCodeIssueTime(t *testing.T) {
	f := newFixture(t, 19)
	must(f.t.AddUser(aid(1), uid(1), "Alice", DepartmentID{}, t0))
	c := f.code(t, uid(1), t0)
	d := f.newDevice(t)
	for _, at := range []time.Time{t0.Add(time.Second), t0.Add(-time.Hour), {}} {
		forged := *c
		forged.IssuedAt = at
		before := stateBytes(t, f.t)
		_, err := f.t.RedeemEnrolmentCode(&forged, f.request(t, &forged, d), nil, t0.Add(time.Minute))
		if at.IsZero() {
			ok(t, err) // version 1: no time to compare
			break
		}
		if !errors.Is(err, ErrBadEnrolmentCode) {
			t.Fatalf("issue time %v: got %v", at, err)
		}
		if !bytes.Equal(before, stateBytes(t, f.t)) {
			t.Fatal("a refused redemption changed the state")
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
		"quorum":  func(b *TrustBundle) { b.Witnesses = WitnessSet{Witnesses: b.Witnesses.Witnesses[:1], Quorum: 1} },
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

// TestEnrolmentCodeSpecExample checks the examples of docs/spec/org.md
// §Enrolment codes, version 2 and version 1.
func TestEnrolmentCodeSpecExample(t *testing.T) {
	const (
		binHex   = "32027e010000000000000000000000000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f000000006955b900202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
		text     = "moat-enrol2:MgJ-AQAAAAAAAAAAAAAAAAAAAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8AAAAAaVW5ACAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4_"
		binHexV1 = "32017e010000000000000000000000000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
		textV1   = "moat-enrol1:MgF-AQAAAAAAAAAAAAAAAAAAAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-Pw"
		hash     = "3b6d86288b8c30229294aac5855b2f6b06dea440067ffa79168c1b370b3f85d3"
	)
	for _, ex := range []struct {
		bin, text string
		issued    time.Time
	}{{binHex, text, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, {binHexV1, textV1, time.Time{}}} {
		c, err := ParseEnrolmentCodeText(ex.text)
		ok(t, err)
		if fmt.Sprintf("%x", c.Marshal()) != ex.bin || c.Text() != ex.text || !c.IssuedAt.Equal(ex.issued) {
			t.Fatal("example encoding mismatch")
		}
		if h := secretHash(c.Tenant, c.ID, c.secretBytes()); fmt.Sprintf("%x", h) != hash {
			t.Fatalf("secret hash %x", h)
		}
	}
}

// TestVerifyEnrolment: a new device accepts the directory's answer to its
// own enrolment and refuses any other: a substituted bundle, a
// certificate of another device or by another CA, one for other keys, and
// one issued before the code (an answer replayed from an older
// enrolment).
func TestVerifyEnrolment(t *testing.T) {
	f := newFixture(t, 20)
	must(f.t.AddUser(aid(1), uid(1), "Alice", DepartmentID{}, t0))
	must(f.t.AddUser(aid(1), uid(2), "Bob", DepartmentID{}, t0))
	// An older enrolment of Bob's device: its answer is what an attacker
	// replays.
	oldCode := f.code(t, uid(2), t0)
	oldDev := f.newDevice(t)
	oldReq := f.request(t, oldCode, oldDev)
	old := must(f.t.RedeemEnrolmentCode(oldCode, oldReq, nil, t0))
	oldCert := must(old.Certificate.Marshal())

	now := t0.Add(time.Hour)
	c := must(ParseEnrolmentCodeText(f.code(t, uid(1), now).Text())) // what the device holds
	d := f.newDevice(t)
	req := f.request(t, c, d)
	en := must(f.t.RedeemEnrolmentCode(c, req, nil, now.Add(time.Minute)))
	bundle, cert := must(en.TrustBundle.Marshal()), must(en.Certificate.Marshal())
	tb, gotCert, err := VerifyEnrolment(c, req, bundle, cert)
	ok(t, err)
	if !tb.CA.Equal(f.t.CA()) || gotCert.Device != en.Certificate.Device || gotCert.User != uid(1) {
		t.Fatal("wrong enrolment")
	}

	// Another device's certificate, in particular the older enrolment's.
	if _, _, err := VerifyEnrolment(c, req, bundle, oldCert); !errors.Is(err, ErrWrongSubject) {
		t.Fatalf("replayed answer of another enrolment: got %v", err)
	}
	// The device's own keys, certified before the code was issued: the
	// answer of an earlier enrolment with the same keys cannot answer
	// this code.
	early := *en.Certificate
	early.NotBefore = now.Add(-time.Second)
	ok(t, issueCertificate(f.signer, &early))
	if _, _, err := VerifyEnrolment(c, req, bundle, must(early.Marshal())); !errors.Is(err, ErrStaleEnrolment) {
		t.Fatalf("certificate older than the code: got %v", err)
	}
	// A version 1 code has no issue time: only the subject binds.
	c1 := *c
	c1.IssuedAt = time.Time{}
	if _, _, err := VerifyEnrolment(&c1, req, bundle, must(early.Marshal())); err != nil {
		t.Fatalf("version 1 code: %v", err)
	}
	// Other keys under this device id, another user's device id.
	for name, mut := range map[string]func(*DeviceCertificate){
		"dh":     func(c *DeviceCertificate) { c.Identity.DH = oldDev.id.DH.Public() },
		"mls":    func(c *DeviceCertificate) { c.MLSKey = oldDev.mls },
		"device": func(c *DeviceCertificate) { c.Device = DeviceID{9} },
		"user": func(c *DeviceCertificate) {
			c.User = uid(2)
		},
	} {
		x := *en.Certificate
		mut(&x)
		ok(t, issueCertificate(f.signer, &x))
		if _, _, err := VerifyEnrolment(c, req, bundle, must(x.Marshal())); !errors.Is(err, ErrWrongSubject) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	// A certificate by another CA, or with a bad signature.
	evil := newFixture(t, 21)
	x := *en.Certificate
	ok(t, issueCertificate(evil.signer, &x))
	if _, _, err := VerifyEnrolment(c, req, bundle, must(x.Marshal())); !errors.Is(err, ErrUnknownIssuer) {
		t.Errorf("another CA: got %v", err)
	}
	bad := bytes.Clone(cert)
	bad[len(bad)-1] ^= 1
	if _, _, err := VerifyEnrolment(c, req, bundle, bad); !errors.Is(err, ErrBadSignature) {
		t.Errorf("bad signature: got %v", err)
	}
	// Another bundle; a request for another code.
	if _, _, err := VerifyEnrolment(c, req, must(evil.t.TrustBundle().Marshal()), cert); !errors.Is(err, ErrFingerprintMismatch) {
		t.Errorf("another bundle: got %v", err)
	}
	if _, _, err := VerifyEnrolment(c, oldReq, bundle, cert); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("request for another code: got %v", err)
	}
}
