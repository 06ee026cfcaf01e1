package deviceauth

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/internal/label"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/sealed"
)

var (
	tenantX = [16]byte{0xa1}
	tenantY = [16]byte{0xb2}
	devA    = [16]byte{1}
	devB    = [16]byte{2}
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func detRand(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// env is one relay with two enrolled devices: A of tenant X, and B, which
// has the same device id as A but in tenant Y.
type env struct {
	v       *Verifier
	clk     *clock
	devices *MemoryDeviceKeys
	replay  *MemoryReplayCache
	keyA    *keys.IdentitySigningPrivateKey
	keyB    *keys.IdentitySigningPrivateKey
	relay   string
	key     []byte
	binding []byte
}

func newEnv(t testing.TB) *env {
	t.Helper()
	r := detRand(1)
	ka, err := keys.GenerateIdentitySigningKey(r)
	must(t, err)
	kb, err := keys.GenerateIdentitySigningKey(r)
	must(t, err)
	e := &env{clk: &clock{time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}, devices: NewMemoryDeviceKeys(),
		replay: NewMemoryReplayCache(1000), keyA: ka, keyB: kb, relay: "relay.example.com",
		key: bytes.Repeat([]byte{7}, 32), binding: bytes.Repeat([]byte{0xcb}, 32)}
	e.devices.Set(tenantX, devA, ka.Public())
	e.devices.Set(tenantY, devA, kb.Public())
	e.v = e.verifier(t, e.relay, e.key)
	return e
}

func (e *env) verifier(t testing.TB, relay string, key []byte) *Verifier {
	t.Helper()
	v, err := NewVerifier(Config{Relay: relay, ChallengeKey: key, Devices: e.devices, Replay: e.replay, Now: e.clk.now, Rand: detRand(2)})
	must(t, err)
	return v
}

// login runs a challenge and response for A at e's relay for p.
func (e *env) respondA(t testing.TB, p Purpose) []byte {
	t.Helper()
	c, err := e.v.Challenge(p)
	must(t, err)
	r, err := Respond(c, e.relay, p, tenantX, devA, e.keyA, e.binding)
	must(t, err)
	return r
}

// TestAuthenticate: the happy path for every purpose, and authorisation
// of the device's own mailbox only.
func TestAuthenticate(t *testing.T) {
	e := newEnv(t)
	for p := PurposeMailbox; p <= PurposeAll; p++ {
		a, err := e.v.Verify(e.respondA(t, p), p, e.binding)
		if err != nil || a.Tenant != tenantX || a.Device != devA || a.Purpose != p {
			t.Fatalf("purpose %d: %+v, %v", p, a, err)
		}
		must(t, a.Authorize(sealed.NewMailboxID(tenantX, devA)))
		if err := a.Authorize(sealed.NewMailboxID(tenantX, devB)); err != ErrForbidden {
			t.Fatalf("another device's mailbox: %v", err)
		}
	}
	// Without channel binding on both sides.
	c, err := e.v.Challenge(PurposeMailbox)
	must(t, err)
	r, err := Respond(c, e.relay, PurposeMailbox, tenantX, devA, e.keyA, nil)
	must(t, err)
	if _, err := e.v.Verify(r, PurposeMailbox, nil); err != nil {
		t.Fatalf("no channel binding: %v", err)
	}
	if len(r) != 2+4+len(e.relay)+8+32+32+32+64 {
		t.Fatalf("response is %d bytes", len(r))
	}
}

// TestT44DeviceAuth: replayed authentication, a challenge of another relay
// or for another purpose, an expired challenge, and another tenant's
// device or mailbox are all refused.
func TestT44DeviceAuth(t *testing.T) {
	t.Run("Replay", func(t *testing.T) {
		e := newEnv(t)
		r := e.respondA(t, PurposeMailbox)
		if _, err := e.v.Verify(r, PurposeMailbox, e.binding); err != nil {
			t.Fatal(err)
		}
		e.clk.t = e.clk.t.Add(10 * time.Second)
		if _, err := e.v.Verify(r, PurposeMailbox, e.binding); err != ErrReplayed {
			t.Fatalf("replayed response: %v, want ErrReplayed", err)
		}
		// After its lifetime the replay is refused as expired.
		e.clk.t = e.clk.t.Add(DefaultLifetime)
		if _, err := e.v.Verify(r, PurposeMailbox, e.binding); err != ErrExpired {
			t.Fatalf("replay after the lifetime: %v, want ErrExpired", err)
		}
	})
	t.Run("WrongRelay", func(t *testing.T) {
		e := newEnv(t)
		// The device refuses to sign another relay's challenge.
		c, err := e.v.Challenge(PurposeMailbox)
		must(t, err)
		if _, err := Respond(c, "evil.example.com", PurposeMailbox, tenantX, devA, e.keyA, nil); err != ErrWrongRelay {
			t.Fatalf("device signed a challenge of another relay: %v", err)
		}
		// A response to relay A presented at relay B (its own key) fails
		// the tag; with a shared key, the name.
		r := e.respondA(t, PurposeMailbox)
		other := e.verifier(t, "other.example.com", bytes.Repeat([]byte{8}, 32))
		if _, err := other.Verify(r, PurposeMailbox, e.binding); err != ErrBadChallenge {
			t.Fatalf("at another relay: %v, want ErrBadChallenge", err)
		}
		shared := e.verifier(t, "other.example.com", e.key)
		if _, err := shared.Verify(r, PurposeMailbox, e.binding); err != ErrWrongRelay {
			t.Fatalf("at another relay sharing the key: %v, want ErrWrongRelay", err)
		}
		if _, err := e.v.Verify(r, PurposeMailbox, e.binding); err != nil {
			t.Fatalf("the refusals burnt the challenge: %v", err)
		}
	})
	t.Run("WrongPurpose", func(t *testing.T) {
		e := newEnv(t)
		c, err := e.v.Challenge(PurposeMailbox)
		must(t, err)
		if _, err := Respond(c, e.relay, PurposePrekeys, tenantX, devA, e.keyA, nil); err != ErrWrongPurpose {
			t.Fatalf("device answered for another purpose: %v", err)
		}
		r := e.respondA(t, PurposeMailbox)
		for _, p := range []Purpose{PurposePrekeys, PurposeAttachments, PurposeDeliveryTokens, PurposeTokenIssuance, PurposeAll} {
			if _, err := e.v.Verify(r, p, e.binding); err != ErrWrongPurpose {
				t.Fatalf("mailbox response at purpose %d: %v", p, err)
			}
		}
		if _, err := e.v.Verify(r, PurposeMailbox, e.binding); err != nil {
			t.Fatalf("the refusals burnt the challenge: %v", err)
		}
	})
	t.Run("Expired", func(t *testing.T) {
		e := newEnv(t)
		r := e.respondA(t, PurposeMailbox)
		e.clk.t = e.clk.t.Add(DefaultLifetime)
		if _, err := e.v.Verify(r, PurposeMailbox, e.binding); err != ErrExpired {
			t.Fatalf("at its lifetime: %v, want ErrExpired", err)
		}
		e.clk.t = e.clk.t.Add(-time.Second)
		if _, err := e.v.Verify(r, PurposeMailbox, e.binding); err != nil {
			t.Fatalf("a second before: %v", err)
		}
		// A challenge from the future (a relay whose clock ran ahead) is
		// accepted within MaxSkew only.
		r = e.respondA(t, PurposeMailbox)
		e.clk.t = e.clk.t.Add(-MaxSkew - time.Second)
		if _, err := e.v.Verify(r, PurposeMailbox, e.binding); err != ErrExpired {
			t.Fatalf("from the future: %v, want ErrExpired", err)
		}
		e.clk.t = e.clk.t.Add(time.Second)
		if _, err := e.v.Verify(r, PurposeMailbox, e.binding); err != nil {
			t.Fatalf("within the skew: %v", err)
		}
	})
	t.Run("CrossTenant", func(t *testing.T) {
		e := newEnv(t)
		// A (tenant X) claims to be device devA of tenant Y: Y's device
		// has another key.
		c, err := e.v.Challenge(PurposeMailbox)
		must(t, err)
		r, err := Respond(c, e.relay, PurposeMailbox, tenantY, devA, e.keyA, e.binding)
		must(t, err)
		if _, err := e.v.Verify(r, PurposeMailbox, e.binding); err != ErrBadSignature {
			t.Fatalf("A as Y's device: %v, want ErrBadSignature", err)
		}
		// A claims a device of Y that does not exist.
		c, err = e.v.Challenge(PurposeMailbox)
		must(t, err)
		r, err = Respond(c, e.relay, PurposeMailbox, tenantY, devB, e.keyA, e.binding)
		must(t, err)
		if _, err := e.v.Verify(r, PurposeMailbox, e.binding); err != ErrUnknownDevice {
			t.Fatalf("A as an unknown device: %v, want ErrUnknownDevice", err)
		}
		// Authenticated as itself, A may not reach Y's mailbox of the
		// same device id.
		a, err := e.v.Verify(e.respondA(t, PurposeMailbox), PurposeMailbox, e.binding)
		must(t, err)
		if err := a.Authorize(sealed.NewMailboxID(tenantY, devA)); err != ErrForbidden {
			t.Fatalf("A on Y's mailbox: %v, want ErrForbidden", err)
		}
	})
}

// TestVerifyRefuses: tampering, revocation, channel binding, a full cache.
func TestVerifyRefuses(t *testing.T) {
	e := newEnv(t)
	r := e.respondA(t, PurposeMailbox)
	flip := func(i int) []byte {
		b := bytes.Clone(r)
		b[i] ^= 1
		return b
	}
	n := len(r)
	tagAt := 2 + 4 + len(e.relay) + 8 + 32
	for name, tc := range map[string]struct {
		resp []byte
		want error
	}{
		"response type":  {flip(0), ErrMalformed},
		"challenge type": {flip(2), ErrMalformed},
		"purpose 0":      {func() []byte { b := bytes.Clone(r); b[4] = 0; return b }(), ErrMalformed},
		"purpose 7":      {func() []byte { b := bytes.Clone(r); b[4] = 7; return b }(), ErrMalformed},
		"relay name":     {flip(6), ErrBadChallenge},
		"issued at":      {flip(6 + len(e.relay) + 7), ErrBadChallenge},
		"nonce":          {flip(tagAt - 1), ErrBadChallenge},
		"tag":            {flip(tagAt), ErrBadChallenge},
		"tenant":         {flip(n - 64 - 32), ErrUnknownDevice},
		"device":         {flip(n - 64 - 1), ErrUnknownDevice},
		"signature":      {flip(n - 1), ErrBadSignature},
		"truncated":      {r[:n-1], ErrMalformed},
		"extended":       {append(bytes.Clone(r), 0), ErrMalformed},
		"huge":           {make([]byte, MaxResponseSize+1), ErrMalformed},
		"empty":          {nil, ErrMalformed},
	} {
		in := bytes.Clone(tc.resp)
		if _, err := e.v.Verify(in, PurposeMailbox, e.binding); err != tc.want {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
		if !bytes.Equal(in, tc.resp) {
			t.Errorf("%s: Verify modified its input", name)
		}
	}
	if _, err := e.v.Verify(r, PurposeMailbox, bytes.Repeat([]byte{0xcc}, 32)); err != ErrBadSignature {
		t.Errorf("another channel binding: %v", err)
	}
	if _, err := e.v.Verify(r, PurposeMailbox, nil); err != ErrBadSignature {
		t.Errorf("no channel binding at the relay: %v", err)
	}
	if e.replay.Len() != 0 {
		t.Fatal("failed attempts filled the replay cache")
	}
	if _, err := e.v.Verify(r, PurposeMailbox, e.binding); err != nil {
		t.Fatalf("honest response after the refused ones: %v", err)
	}
	// A revoked device cannot authenticate.
	e.devices.Revoke(tenantX, devA)
	if _, err := e.v.Verify(e.respondA(t, PurposeMailbox), PurposeMailbox, e.binding); err != ErrUnknownDevice {
		t.Fatalf("revoked device: %v", err)
	}
	e.devices.Set(tenantX, devA, e.keyA.Public())

	// A full cache refuses rather than forget a live nonce, and recovers
	// once entries expire.
	e.replay = NewMemoryReplayCache(2)
	e.v = e.verifier(t, e.relay, e.key)
	for range 2 {
		if _, err := e.v.Verify(e.respondA(t, PurposeMailbox), PurposeMailbox, e.binding); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.v.Verify(e.respondA(t, PurposeMailbox), PurposeMailbox, e.binding); err != ErrReplayCacheFull {
		t.Fatalf("third into a cache of 2: %v", err)
	}
	fresh := e.respondA(t, PurposeMailbox)
	e.clk.t = e.clk.t.Add(DefaultLifetime - time.Second)
	if _, err := e.v.Verify(fresh, PurposeMailbox, e.binding); err != ErrReplayCacheFull {
		t.Fatalf("before the entries expire: %v", err)
	}
	e.clk.t = e.clk.t.Add(time.Second)
	if _, err := e.v.Verify(e.respondA(t, PurposeMailbox), PurposeMailbox, e.binding); err != nil {
		t.Fatalf("after the entries expired: %v", err)
	}
}

// TestRespondRefuses: the device side's own checks.
func TestRespondRefuses(t *testing.T) {
	e := newEnv(t)
	c, err := e.v.Challenge(PurposeMailbox)
	must(t, err)
	for name, err := range map[string]error{
		"zero tenant":  ignore(Respond(c, e.relay, PurposeMailbox, [16]byte{}, devA, e.keyA, nil)),
		"zero device":  ignore(Respond(c, e.relay, PurposeMailbox, tenantX, [16]byte{}, e.keyA, nil)),
		"no key":       ignore(Respond(c, e.relay, PurposeMailbox, tenantX, devA, nil, nil)),
		"long binding": ignore(Respond(c, e.relay, PurposeMailbox, tenantX, devA, e.keyA, make([]byte, 256))),
		"truncated":    ignore(Respond(c[:len(c)-1], e.relay, PurposeMailbox, tenantX, devA, e.keyA, nil)),
		"response":     ignore(Respond(e.respondA(t, PurposeMailbox), e.relay, PurposeMailbox, tenantX, devA, e.keyA, nil)),
	} {
		if err != ErrMalformed {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := e.v.Challenge(0); err != ErrMalformed {
		t.Errorf("challenge for purpose 0: %v", err)
	}
	for name, cfg := range map[string]Config{
		"empty relay":   {Relay: "", ChallengeKey: e.key, Devices: e.devices, Replay: e.replay},
		"space":         {Relay: "a b", ChallengeKey: e.key, Devices: e.devices, Replay: e.replay},
		"short key":     {Relay: "r", ChallengeKey: e.key[:31], Devices: e.devices, Replay: e.replay},
		"no devices":    {Relay: "r", ChallengeKey: e.key, Replay: e.replay},
		"no cache":      {Relay: "r", ChallengeKey: e.key, Devices: e.devices},
		"long lifetime": {Relay: "r", ChallengeKey: e.key, Devices: e.devices, Replay: e.replay, Lifetime: MaxLifetime + 1},
	} {
		if _, err := NewVerifier(cfg); err == nil {
			t.Errorf("NewVerifier accepted %s", name)
		}
	}
}

func ignore(_ []byte, err error) error { return err }

// TestSignedMessage pins the layout of ResponseTBS against the spec, and
// checks that a response signature is no prekey signature.
func TestSignedMessage(t *testing.T) {
	c := &challenge{purpose: PurposePrekeys, relay: "r.example", issuedAt: 0x0102030405060708}
	c.nonce[0], c.tag[0] = 0xaa, 0xbb
	m := responseTBS(c, tenantX, devA, []byte{9, 9})
	want := []byte(label.DeviceAuthResponse)
	want = append(want, 0, 0x2b, 1, 2, 9)
	want = append(want, "r.example"...)
	want = append(want, 1, 2, 3, 4, 5, 6, 7, 8)
	want = append(want, c.nonce[:]...)
	want = append(want, c.tag[:]...)
	want = append(want, tenantX[:]...)
	want = append(want, devA[:]...)
	want = append(want, 2, 9, 9)
	if !bytes.Equal(m, want) {
		t.Fatalf("ResponseTBS\n got %x\nwant %x", m, want)
	}
	e := newEnv(t)
	r := e.respondA(t, PurposePrekeys)
	sig := r[len(r)-64:]
	spk := keys.SignSignedPrekey(1, time.Unix(0, 0), mustSPK(t), e.keyA)
	if bytes.Equal(sig, spk.Signature) {
		t.Fatal("signatures collide")
	}
	if err := (&keys.SignedPrekey{ID: 1, Created: time.Unix(0, 0), Key: spk.Key, Signature: sig}).Verify(e.keyA.Public()); !errors.Is(err, keys.ErrUnsignedPrekey) {
		t.Fatal("a response signature verified as a prekey signature")
	}
}

func mustSPK(t *testing.T) *keys.SignedPrekeyPublicKey {
	k, err := keys.GenerateSignedPrekeyKey(detRand(3))
	must(t, err)
	return k.Public()
}

// Fuzz targets: parse ok ⇒ re-encoding reproduces the input; Verify never
// panics and returns only its errors.

func FuzzParseResponse(f *testing.F) {
	e := newEnv(f)
	f.Add(e.respondA(f, PurposeMailbox))
	f.Add([]byte{0x2c, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseResponse(b)
		if err != nil {
			return
		}
		if !bytes.Equal(r.marshal(), b) {
			t.Fatal("response does not re-encode")
		}
	})
}

func FuzzParseChallenge(f *testing.F) {
	e := newEnv(f)
	c, err := e.v.Challenge(PurposeAttachments)
	must(f, err)
	f.Add(c)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseChallenge(b)
		if err != nil {
			return
		}
		if !bytes.Equal(c.marshal(), b) {
			t.Fatal("challenge does not re-encode")
		}
	})
}

func FuzzVerify(f *testing.F) {
	e := newEnv(f)
	f.Add(e.respondA(f, PurposeMailbox), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, p uint8) {
		_, err := e.v.Verify(b, Purpose(p), e.binding)
		switch err {
		case nil, ErrMalformed, ErrBadChallenge, ErrWrongRelay, ErrWrongPurpose, ErrExpired, ErrUnknownDevice, ErrBadSignature, ErrReplayed:
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	e := newEnv(b)
	e.replay = NewMemoryReplayCache(1 << 30)
	e.v = e.verifier(b, e.relay, e.key)
	resps := make([][]byte, 0, 1024)
	for range cap(resps) {
		resps = append(resps, e.respondA(b, PurposeMailbox))
	}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i == len(resps) { // refill outside the budget of a realistic call
			b.StopTimer()
			e.replay = NewMemoryReplayCache(1 << 30)
			e.v = e.verifier(b, e.relay, e.key)
			i = 0
			b.StartTimer()
		}
		if _, err := e.v.Verify(resps[i], PurposeMailbox, e.binding); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkRespond(b *testing.B) {
	e := newEnv(b)
	c, err := e.v.Challenge(PurposeMailbox)
	must(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Respond(c, e.relay, PurposeMailbox, tenantX, devA, e.keyA, e.binding); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPurposeAll: a response for PurposeAll verifies only as PurposeAll
// (a response for one purpose is not one for all, nor the reverse), and
// an authentication for PurposeAll covers every single purpose, while one
// for a single purpose covers only itself.
func TestPurposeAll(t *testing.T) {
	e := newEnv(t)
	c, err := e.v.Challenge(PurposeAll)
	must(t, err)
	if _, err := Respond(c, e.relay, PurposeMailbox, tenantX, devA, e.keyA, e.binding); err != ErrWrongPurpose {
		t.Fatalf("device answered an all challenge as mailbox: %v", err)
	}
	r := e.respondA(t, PurposeAll)
	if _, err := e.v.Verify(r, PurposeMailbox, e.binding); err != ErrWrongPurpose {
		t.Fatalf("all response verified as mailbox: %v", err)
	}
	if _, err := e.v.Verify(e.respondA(t, PurposeMailbox), PurposeAll, e.binding); err != ErrWrongPurpose {
		t.Fatalf("mailbox response verified as all: %v", err)
	}
	a, err := e.v.Verify(r, PurposeAll, e.binding)
	must(t, err)
	for p := PurposeMailbox; p <= PurposeAll; p++ {
		if !a.Purpose.Covers(p) {
			t.Errorf("all does not cover %d", p)
		}
		for q := PurposeMailbox; q <= PurposeAll; q++ {
			if want := p == q || p == PurposeAll; p.Covers(q) != want {
				t.Errorf("%d covers %d: %v", p, q, !want)
			}
		}
		if p.Covers(0) || p.Covers(PurposeAll+1) {
			t.Errorf("%d covers an undefined purpose", p)
		}
	}
}
