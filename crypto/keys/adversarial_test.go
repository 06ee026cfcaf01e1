package keys

// Named adversarial cases from the threat model (T08, T10, T11, T12).

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"math/big"
	"reflect"
	"testing"
	"time"

	"filippo.io/edwards25519"
)

// TestT08KeyTypeConfusion: a key of one type is never accepted as another.
func TestT08KeyTypeConfusion(t *testing.T) {
	s := newSampleKeys(t, 8)

	// Every type's binary and text encoding is rejected by every other
	// type's decoders with ErrWrongType (and accepted by its own).
	type decoders struct {
		bin  func([]byte) error
		text func(string) error // exported for the identity keys, else built from the same internals
	}
	ignore := func(_ any, err error) error { return err }
	dec := map[Tag]decoders{
		TagIdentitySigning: {func(b []byte) error { return ignore(ParseIdentitySigningPublicKey(b)) }, func(s string) error { return ignore(ParseIdentitySigningPublicKeyText(s)) }},
		TagIdentityDH:      {func(b []byte) error { return ignore(ParseIdentityDHPublicKey(b)) }, func(s string) error { return ignore(ParseIdentityDHPublicKeyText(s)) }},
		TagSignedPrekey:    {func(b []byte) error { return ignore(ParseSignedPrekeyPublicKey(b)) }, func(s string) error { return ignore(testParseX25519Text[roleSignedPrekey](s)) }},
		TagOneTimePrekey:   {func(b []byte) error { return ignore(ParseOneTimePrekeyPublicKey(b)) }, func(s string) error { return ignore(testParseX25519Text[roleOneTimePrekey](s)) }},
		TagKEMPrekey:       {func(b []byte) error { return ignore(ParseKEMPrekeyPublicKey(b)) }, func(s string) error { return ignore(testParseKEMText[roleKEMPrekey](s)) }},
		TagRatchetDH:       {func(b []byte) error { return ignore(ParseRatchetDHPublicKey(b)) }, func(s string) error { return ignore(testParseX25519Text[roleRatchetDH](s)) }},
		TagRatchetKEM:      {func(b []byte) error { return ignore(ParseRatchetKEMPublicKey(b)) }, func(s string) error { return ignore(testParseKEMText[roleRatchetKEM](s)) }},
		TagEphemeralDH:     {func(b []byte) error { return ignore(ParseEphemeralDHPublicKey(b)) }, func(s string) error { return ignore(testParseX25519Text[roleEphemeralDH](s)) }},
		TagOrgSigning:      {func(b []byte) error { return ignore(ParseOrgPublicKey(b)) }, func(s string) error { return ignore(testParseHybridText[roleOrg](s)) }},
		TagDirectorySign:   {func(b []byte) error { return ignore(ParseDirectoryPublicKey(b)) }, func(s string) error { return ignore(testParseHybridText[roleDirectory](s)) }},
		TagLogSigning:      {func(b []byte) error { return ignore(ParseLogPublicKey(b)) }, func(s string) error { return ignore(testParseHybridText[roleLog](s)) }},
		TagSealedSender:    {func(b []byte) error { return ignore(ParseSealedSenderPublicKey(b)) }, func(s string) error { return ignore(ParseSealedSenderPublicKeyText(s)) }},
		TagRelaySigning:    {func(b []byte) error { return ignore(ParseRelaySigningPublicKey(b)) }, func(s string) error { return ignore(ParseRelaySigningPublicKeyText(s)) }},
	}
	if len(dec) != len(prefixes) {
		t.Fatalf("decoders for %d types, %d types exist", len(dec), len(prefixes))
	}
	pairs := 0
	for from := range prefixes {
		for to, d := range dec {
			bErr, tErr := d.bin(s.binaries[from]), d.text(s.texts[from])
			if from == to {
				if bErr != nil || tErr != nil {
					t.Errorf("type %#x: own encodings rejected: %v, %v", to, bErr, tErr)
				}
				continue
			}
			pairs++
			if bErr != ErrWrongType {
				t.Errorf("binary encoding of %#x parsed as %#x: %v, want ErrWrongType", from, to, bErr)
			}
			if tErr != ErrWrongType {
				t.Errorf("text encoding of %#x parsed as %#x: %v, want ErrWrongType", from, to, tErr)
			}
			// Re-tagging the raw key is caught by length or content when
			// the sizes differ; same-size re-tagging is the one thing the
			// tag cannot stop, and is why every key carries one.
		}
	}
	if pairs != 13*12 {
		t.Fatalf("checked %d pairs", pairs)
	}

	// X25519 bytes as an ML-KEM key.
	x := s.idDH.Public().Raw()
	for name, f := range map[string]func([]byte) error{
		"NewKEMPrekeyPublicKey":  func(b []byte) error { return ignore(NewKEMPrekeyPublicKey(b)) },
		"NewRatchetKEMPublicKey": func(b []byte) error { return ignore(NewRatchetKEMPublicKey(b)) },
	} {
		if err := f(x); err != ErrMalformed {
			t.Errorf("%s(X25519 key) = %v, want ErrMalformed", name, err)
		}
		// 37 copies of a 32-byte key are exactly 1184 bytes.
		if err := f(bytes.Repeat(x, KEMPublicKeySize/32)); err != ErrInvalidKEMKey {
			t.Errorf("%s(X25519 key ×37) = %v, want ErrInvalidKEMKey", name, err)
		}
	}
	if _, err := ParseKEMPrekeyPublicKey(append([]byte{byte(TagKEMPrekey)}, x...)); err != ErrMalformed {
		t.Errorf("KEM tag + X25519 key = %v, want ErrMalformed", err)
	}
	if _, err := NewIdentityDHPublicKey(s.kem.Public().Raw()); err != ErrMalformed {
		t.Errorf("ML-KEM key as X25519 = %v, want ErrMalformed", err)
	}
	if _, err := NewIdentitySigningPublicKey(s.kem.Public().Raw()[:40]); err != ErrMalformed {
		t.Errorf("ML-KEM key prefix as Ed25519 = %v, want ErrMalformed", err)
	}

	// A signed-prekey signature does not verify as a KEM-prekey signature,
	// and vice versa, for the same id, time and signer.
	id := s.idSig
	now := time.Unix(1_700_000_000, 0)
	spk := SignSignedPrekey(42, now, s.spk.Public(), id)
	kp := SignKEMPrekey(42, now, false, s.kem.Public(), id)
	kpLR := SignKEMPrekey(42, now, true, s.kem.Public(), id)
	for name, err := range map[string]error{"signed prekey": spk.Verify(id.Public()), "KEM prekey": kp.Verify(id.Public()), "last-resort KEM prekey": kpLR.Verify(id.Public())} {
		if err != nil {
			t.Fatalf("%s: honest signature rejected: %v", name, err)
		}
	}
	swapped := []struct {
		name string
		err  error
	}{
		{"signed-prekey signature on a KEM prekey", (&KEMPrekey{ID: 42, Created: kp.Created, Key: kp.Key, Signature: spk.Signature}).Verify(id.Public())},
		{"KEM-prekey signature on a signed prekey", (&SignedPrekey{ID: 42, Created: spk.Created, Key: spk.Key, Signature: kp.Signature}).Verify(id.Public())},
		{"one-time KEM signature with the last-resort flag", (&KEMPrekey{ID: 42, Created: kp.Created, LastResort: true, Key: kp.Key, Signature: kp.Signature}).Verify(id.Public())},
		{"last-resort KEM signature without the flag", (&KEMPrekey{ID: 42, Created: kp.Created, Key: kp.Key, Signature: kpLR.Signature}).Verify(id.Public())},
		{"signed prekey with another id", (&SignedPrekey{ID: 43, Created: spk.Created, Key: spk.Key, Signature: spk.Signature}).Verify(id.Public())},
		{"signed prekey with another time", (&SignedPrekey{ID: 42, Created: spk.Created.Add(time.Second), Key: spk.Key, Signature: spk.Signature}).Verify(id.Public())},
		{"signed prekey under another identity", spk.Verify(newSampleKeys(t, 9).idSig.Public())},
		{"nil key", (&SignedPrekey{ID: 42, Created: spk.Created, Signature: spk.Signature}).Verify(id.Public())},
	}
	for _, c := range swapped {
		if c.err != ErrUnsignedPrekey {
			t.Errorf("%s: %v, want ErrUnsignedPrekey", c.name, c.err)
		}
	}
	// Neither signed message is a prefix of the other or of a hybrid one.
	mS := SignedPrekeySigningMessage(42, now, s.spk.Public())
	mK := KEMPrekeySigningMessage(42, now, false, s.kem.Public())
	if bytes.HasPrefix(mS, mK[:20]) || bytes.HasPrefix(mK, mS[:20]) {
		t.Error("signed-prekey and KEM-prekey messages share a 20-byte prefix")
	}

	// A hybrid signature of one role does not verify under another role's
	// key derived from the same seed (the keys are identical but for the
	// type; the role label in the signed message separates them).
	seed := make([]byte, HybridSeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	org, err := NewOrgPrivateKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := GenerateDirectoryKey(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	lg, err := GenerateLogKey(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(org.Public().Bytes()[1:], dir.Public().Bytes()[1:]) || !bytes.Equal(org.Public().Bytes()[1:], lg.Public().Bytes()[1:]) {
		t.Fatal("same seed gave different raw hybrid keys")
	}
	msg := []byte("checkpoint or certificate")
	sigs := map[string][]byte{}
	for name, sign := range map[string]func([]byte) ([]byte, error){"org": org.Sign, "directory": dir.Sign, "log": lg.Sign} {
		if sigs[name], err = sign(msg); err != nil {
			t.Fatal(err)
		}
	}
	verify := map[string]func([]byte, []byte) error{"org": org.Public().Verify, "directory": dir.Public().Verify, "log": lg.Public().Verify}
	for signer, sig := range sigs {
		for verifier, v := range verify {
			err := v(msg, sig)
			if signer == verifier && err != nil {
				t.Errorf("%s signature rejected by its own key: %v", signer, err)
			}
			if signer != verifier && err != ErrBadSignature {
				t.Errorf("%s signature under %s key: %v, want ErrBadSignature", signer, verifier, err)
			}
		}
	}
	// The Ed25519 half of a hybrid signature is not an identity signature
	// over the same message, even with the same Ed25519 seed.
	idSame, err := NewIdentitySigningKeyFromSeed(seed[:ed25519.SeedSize])
	if err != nil {
		t.Fatal(err)
	}
	if err := idSame.Public().Verify(msg, sigs["org"][:ed25519.SignatureSize]); err != ErrBadSignature {
		t.Errorf("hybrid Ed25519 half verified as an identity signature: %v", err)
	}
}

// x25519P is 2^255 − 19.
var x25519P = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))

// leBytes32 is the 32-byte little-endian encoding of n (n < 2^256).
func leBytes32(n *big.Int) []byte {
	be := n.FillBytes(make([]byte, 32))
	for i, j := 0, 31; i < j; i, j = i+1, j-1 {
		be[i], be[j] = be[j], be[i]
	}
	return be
}

func leInt(b []byte) *big.Int {
	be := bytes.Clone(b)
	for i, j := 0, len(be)-1; i < j; i, j = i+1, j-1 {
		be[i], be[j] = be[j], be[i]
	}
	return new(big.Int).SetBytes(be)
}

// lowOrderU derives, independently of lowOrderX25519, the u-coordinates of
// every point of order dividing 8 on Curve25519 and its twist:
//
//   - u = 0 (order 2) and u = ±1 (order 4: [2]P = (0, 0), i.e.
//     (u² − 1)² = 0), where u = 1 is on the curve and u = −1 on the twist;
//   - the two order-8 u-coordinates, mapped with u = (1 + y)/(1 − y) from the
//     order-8 edwards25519 points, which are checked to have order 8.
func lowOrderU(t *testing.T) []*big.Int {
	p := x25519P
	us := []*big.Int{big.NewInt(0), big.NewInt(1), new(big.Int).Sub(p, big.NewInt(1))}
	for _, h := range []string{
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
	} {
		b, _ := hex.DecodeString(h)
		pt, err := new(edwards25519.Point).SetBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		four := new(edwards25519.Point).Add(pt, pt)
		four.Add(four, four)
		if new(edwards25519.Point).MultByCofactor(pt).Equal(edwards25519.NewIdentityPoint()) != 1 ||
			four.Equal(edwards25519.NewIdentityPoint()) == 1 {
			t.Fatalf("%s is not of order 8", h)
		}
		y := leInt(b)
		y.SetBit(y, 255, 0)
		num := new(big.Int).Add(big.NewInt(1), y)
		den := new(big.Int).Sub(big.NewInt(1), y)
		den.Mod(den, p)
		u := new(big.Int).Mul(num, new(big.Int).ModInverse(den, p))
		us = append(us, u.Mod(u, p))
	}
	return us
}

// TestT10LowOrderX25519: low-order and non-canonical X25519 public keys are
// rejected at import with typed errors, so no DH yields an all-zero secret.
func TestT10LowOrderX25519(t *testing.T) {
	imports := map[string]func([]byte) error{
		"NewIdentityDHPublicKey":  func(b []byte) error { _, err := NewIdentityDHPublicKey(b); return err },
		"NewRatchetDHPublicKey":   func(b []byte) error { _, err := NewRatchetDHPublicKey(b); return err },
		"NewEphemeralDHPublicKey": func(b []byte) error { _, err := NewEphemeralDHPublicKey(b); return err },
		"ParseIdentityDHPublicKey": func(b []byte) error {
			_, err := ParseIdentityDHPublicKey(append([]byte{byte(TagIdentityDH)}, b...))
			return err
		},
		"ParseSignedPrekeyPublicKey": func(b []byte) error {
			_, err := ParseSignedPrekeyPublicKey(append([]byte{byte(TagSignedPrekey)}, b...))
			return err
		},
		"ParseOneTimePrekeyPublicKey": func(b []byte) error {
			_, err := ParseOneTimePrekeyPublicKey(append([]byte{byte(TagOneTimePrekey)}, b...))
			return err
		},
		"ParseRatchetDHPublicKey": func(b []byte) error {
			_, err := ParseRatchetDHPublicKey(append([]byte{byte(TagRatchetDH)}, b...))
			return err
		},
		"ParseEphemeralDHPublicKey": func(b []byte) error {
			_, err := ParseEphemeralDHPublicKey(append([]byte{byte(TagEphemeralDH)}, b...))
			return err
		},
		"ParseIdentityDHPublicKeyText": func(b []byte) error {
			_, err := ParseIdentityDHPublicKeyText(encodeText(TagIdentityDH, b))
			return err
		},
	}
	expect := func(what string, raw []byte, want error) {
		t.Helper()
		for name, f := range imports {
			if err := f(raw); err != want {
				t.Errorf("%s %x: %s = %v, want %v", what, raw, name, err, want)
			}
		}
	}

	// The derived low-order set equals the package's list.
	derived := lowOrderU(t)
	if len(derived) != len(lowOrderX25519) {
		t.Fatalf("derived %d low-order points, list has %d", len(derived), len(lowOrderX25519))
	}
	for _, u := range derived {
		enc := leBytes32(u)
		found := false
		for _, lo := range lowOrderX25519 {
			found = found || bytes.Equal(lo, enc)
		}
		if !found {
			t.Errorf("low-order u = %x missing from lowOrderX25519", enc)
		}
	}

	// Canonical low-order encodings: ErrLowOrder. Every one gives an
	// all-zero X25519 output (stdlib errors) for a random scalar.
	for _, u := range derived {
		enc := leBytes32(u)
		expect("low-order", enc, ErrLowOrder)
		if !stdlibRejects(t, enc) {
			t.Errorf("stdlib X25519 accepted low-order %x", enc)
		}
		// Non-canonical encodings of the same point: top bit set, and
		// u + p when it fits in 255 bits.
		hi := bytes.Clone(enc)
		hi[31] |= 0x80
		expect("low-order with top bit", hi, ErrNonCanonical)
		if up := new(big.Int).Add(u, x25519P); up.BitLen() <= 255 {
			e := leBytes32(up)
			expect("low-order u+p", e, ErrNonCanonical)
			e[31] |= 0x80
			expect("low-order u+p with top bit", e, ErrNonCanonical)
		}
	}

	// Every u ≥ p (p … 2^255 − 1), with and without the top bit: ErrNonCanonical.
	for i := int64(0); i < 19; i++ {
		e := leBytes32(new(big.Int).Add(x25519P, big.NewInt(i)))
		expect("u ≥ p", e, ErrNonCanonical)
		e[31] |= 0x80
		expect("u ≥ p with top bit", e, ErrNonCanonical)
	}
	// p − 2 is canonical and of large order: accepted.
	expect("p − 2", leBytes32(new(big.Int).Sub(x25519P, big.NewInt(2))), nil)
	// A valid key with its top bit set: ErrNonCanonical.
	good := newSampleKeys(t, 10).idDH.Public().Raw()
	expect("valid key", good, nil)
	good[31] |= 0x80
	expect("valid key with top bit", good, ErrNonCanonical)

	// Cross-check against crypto/ecdh: whenever stdlib X25519 with a random
	// scalar fails (an all-zero output), our decoder must have rejected the
	// key; when ours accepts, DH must agree with stdlib. Inputs: 2000 random
	// canonical keys, the ranges [0, 512) and [p − 512, p), and every
	// Wycheproof X25519 public key.
	var inputs [][]byte
	for range 2000 {
		b := make([]byte, 32)
		rand.Read(b)
		b[31] &= 0x7f
		if leInt(b).Cmp(x25519P) >= 0 {
			continue
		}
		inputs = append(inputs, b)
	}
	for i := int64(0); i < 512; i++ {
		inputs = append(inputs, leBytes32(big.NewInt(i)), leBytes32(new(big.Int).Sub(x25519P, big.NewInt(i+1))))
	}
	var wp struct {
		TestGroups []struct {
			Tests []struct {
				Public hexBytes `json:"public"`
			} `json:"tests"`
		} `json:"testGroups"`
	}
	loadWycheproof(t, "x25519_test.json", &wp)
	nWP := 0
	for _, g := range wp.TestGroups {
		for _, tc := range g.Tests {
			inputs = append(inputs, tc.Public)
			nWP++
		}
	}
	if nWP < 500 {
		t.Fatalf("only %d Wycheproof public keys", nWP)
	}
	ourPriv, err := GenerateEphemeralDHKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	stdPriv, err := ecdh.X25519().NewPrivateKey(ourPriv.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	stdFailures, ourRejections := 0, 0
	for _, in := range inputs {
		pub, ourErr := NewIdentityDHPublicKey(in)
		if ourErr != nil {
			ourRejections++
		}
		stdPub, err := ecdh.X25519().NewPublicKey(in)
		if err != nil {
			t.Fatalf("stdlib rejected a 32-byte key: %v", err)
		}
		stdSS, stdErr := stdPriv.ECDH(stdPub)
		if stdErr != nil {
			stdFailures++
			if ourErr == nil {
				t.Errorf("%x: stdlib X25519 fails (%v) but our decoder accepted it", in, stdErr)
			}
			continue
		}
		if ourErr != nil {
			// Ours may reject more (non-canonical encodings); a canonical
			// encoding must only be rejected if it is low order.
			if in[31]&0x80 == 0 && leInt(in).Cmp(x25519P) < 0 {
				t.Errorf("%x: canonical key with a non-zero X25519 output rejected: %v", in, ourErr)
			}
			continue
		}
		ss, err := ourPriv.DH(pub)
		if err != nil || !bytes.Equal(ss, stdSS) {
			t.Errorf("%x: DH = %x, %v; stdlib %x", in, ss, err, stdSS)
		}
	}
	t.Logf("cross-check: %d inputs (%d Wycheproof), stdlib failed on %d, ours rejected %d", len(inputs), nWP, stdFailures, ourRejections)
	if stdFailures == 0 {
		t.Error("no input made stdlib fail; the cross-check checked nothing")
	}
}

// stdlibRejects reports whether crypto/ecdh X25519 with a random scalar
// fails (all-zero output) on raw.
func stdlibRejects(t *testing.T, raw []byte) bool {
	t.Helper()
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ecdh.X25519().NewPublicKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	_, err = priv.ECDH(pub)
	return err != nil
}

// setCoefficient12 sets coefficient j (0 ≤ j < 768) of an ML-KEM-768
// encapsulation key's ByteEncode₁₂ encoding to v.
func setCoefficient12(ek []byte, j int, v uint16) {
	b := ek[3*(j/2):]
	if j%2 == 0 {
		b[0] = byte(v)
		b[1] = b[1]&0xf0 | byte(v>>8)&0x0f
	} else {
		b[1] = b[1]&0x0f | byte(v<<4)
		b[2] = byte(v >> 4)
	}
}

// TestT11MalformedMLKEM: malformed ML-KEM keys are rejected on import, and
// any ciphertext of the right length decapsulates (implicit rejection)
// without a panic or a distinguishing error.
func TestT11MalformedMLKEM(t *testing.T) {
	priv, err := GenerateKEMPrekeyKey(testRand(11))
	if err != nil {
		t.Fatal(err)
	}
	ek := priv.Public().Raw()

	// Bad lengths: ErrMalformed (from every decoder of the type).
	for _, n := range []int{0, 1, 32, 800, KEMPublicKeySize - 1, KEMPublicKeySize + 1, 1568, 2400} {
		b := make([]byte, n)
		copy(b, ek)
		if _, err := NewKEMPrekeyPublicKey(b); err != ErrMalformed {
			t.Errorf("%d-byte ek: %v, want ErrMalformed", n, err)
		}
		if _, err := ParseKEMPrekeyPublicKey(append([]byte{byte(TagKEMPrekey)}, b...)); err != ErrMalformed {
			t.Errorf("%d-byte tagged ek: %v, want ErrMalformed", n, err)
		}
	}

	// Modulus violations: any coefficient in [q, 2¹²) is ErrInvalidKEMKey;
	// q − 1 in the same place is accepted (so the check is exact).
	const q = 3329
	for _, j := range []int{0, 1, 255, 256, 511, 512, 766, 767} {
		for _, v := range []uint16{q, q + 1, 4000, 4095} {
			bad := bytes.Clone(ek)
			setCoefficient12(bad, j, v)
			if _, err := NewKEMPrekeyPublicKey(bad); err != ErrInvalidKEMKey {
				t.Errorf("coefficient %d = %d: %v, want ErrInvalidKEMKey", j, v, err)
			}
			if _, err := NewRatchetKEMPublicKey(bad); err != ErrInvalidKEMKey {
				t.Errorf("ratchet key, coefficient %d = %d: %v, want ErrInvalidKEMKey", j, v, err)
			}
		}
		ok := bytes.Clone(ek)
		setCoefficient12(ok, j, q-1)
		if _, err := NewKEMPrekeyPublicKey(ok); err != nil {
			t.Errorf("coefficient %d = q − 1 rejected: %v", j, err)
		}
	}
	// ρ (the last 32 bytes) is unconstrained.
	rho := bytes.Clone(ek)
	for i := KEMPublicKeySize - 32; i < KEMPublicKeySize; i++ {
		rho[i] = 0xff
	}
	if _, err := NewKEMPrekeyPublicKey(rho); err != nil {
		t.Errorf("ek with ρ = ff…ff rejected: %v", err)
	}
	// All-0xff: every coefficient is 4095.
	if _, err := NewKEMPrekeyPublicKey(bytes.Repeat([]byte{0xff}, KEMPublicKeySize)); err != ErrInvalidKEMKey {
		t.Errorf("all-ff ek: %v, want ErrInvalidKEMKey", err)
	}

	// Garbage and modified ciphertexts of the right length: no panic, no
	// error, a 32-byte secret that differs from the real one, and the same
	// secret every time (implicit rejection is deterministic).
	ct, ss, err := priv.Public().Encapsulate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := priv.Decapsulate(ct); err != nil || !bytes.Equal(got, ss) {
		t.Fatalf("honest decapsulation failed: %v", err)
	}
	var garbage [][]byte
	garbage = append(garbage, make([]byte, KEMCiphertextSize), bytes.Repeat([]byte{0xff}, KEMCiphertextSize))
	for range 32 {
		g := make([]byte, KEMCiphertextSize)
		rand.Read(g)
		garbage = append(garbage, g)
	}
	for _, pos := range []int{0, 1, 319, 639, 959, 960, 1024, 1087} {
		m := bytes.Clone(ct)
		m[pos] ^= 0x01
		garbage = append(garbage, m)
	}
	seen := map[string]bool{}
	for i, g := range garbage {
		k1, err := priv.Decapsulate(g)
		if err != nil || len(k1) != KEMSharedSecretSize {
			t.Errorf("garbage %d: Decapsulate = %x, %v", i, k1, err)
			continue
		}
		if bytes.Equal(k1, ss) {
			t.Errorf("garbage %d decapsulated to the real secret", i)
		}
		if k2, _ := priv.Decapsulate(g); !bytes.Equal(k1, k2) {
			t.Errorf("garbage %d: implicit rejection is not deterministic", i)
		}
		if seen[string(k1)] {
			t.Errorf("garbage %d: rejection secret repeats", i)
		}
		seen[string(k1)] = true
	}

	// Wrong-length ciphertexts: ErrMalformed, no secret.
	for _, n := range []int{0, 1, 768, KEMCiphertextSize - 1, KEMCiphertextSize + 1, 1568} {
		c := make([]byte, n)
		copy(c, ct)
		if k, err := priv.Decapsulate(c); err != ErrMalformed || k != nil {
			t.Errorf("%d-byte ciphertext: %x, %v; want nil, ErrMalformed", n, k, err)
		}
	}

	// The FIPS 203 §7.3 decapsulation-key (hash) check cannot be reached:
	// NewKEMPrekeyPrivateKey and NewRatchetKEMPrivateKey take only the
	// 64-byte (d, z) seed, from which dk is derived, never an expanded dk,
	// so circl's PrivateKey.Unpack (which performs the check) is never
	// called on input. An expanded dk handed to them is malformed.
	dk := packedDK(priv)
	if _, err := NewKEMPrekeyPrivateKey(dk); err != ErrMalformed {
		t.Errorf("expanded dk as seed: %v, want ErrMalformed", err)
	}
	if _, err := NewRatchetKEMPrivateKey(dk); err != ErrMalformed {
		t.Errorf("expanded dk as ratchet seed: %v, want ErrMalformed", err)
	}
}

// edL is the order of the edwards25519 prime-order subgroup.
var edL, _ = new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)

// lenientEd25519Verify is a reference verifier that accepts what RFC 8032
// forbids on R: it decodes R leniently (non-canonical encodings allowed) and
// compares points, not encodings. Used to show that a signature our Verify
// rejects is otherwise valid.
func lenientEd25519Verify(pub, msg, sig []byte) bool {
	A, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return false
	}
	R, err := new(edwards25519.Point).SetBytes(sig[:32])
	if err != nil {
		return false
	}
	S, err := new(edwards25519.Scalar).SetCanonicalBytes(sig[32:])
	if err != nil {
		return false
	}
	h := sha512.New()
	h.Write(sig[:32])
	h.Write(pub)
	h.Write(msg)
	k, _ := new(edwards25519.Scalar).SetUniformBytes(h.Sum(nil))
	// [S]B − [k]A == R
	kA := new(edwards25519.Point).ScalarMult(k, A)
	lhs := new(edwards25519.Point).ScalarBaseMult(S)
	lhs.Subtract(lhs, kA)
	return lhs.Equal(R) == 1
}

// TestT12Ed25519Malleability: malleated and non-canonical Ed25519 signatures
// and keys are rejected.
func TestT12Ed25519Malleability(t *testing.T) {
	priv, err := GenerateIdentitySigningKey(testRand(12))
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.Public()
	msg := []byte("moat T12")
	sig := priv.Sign(msg)
	if err := pub.Verify(msg, sig); err != nil {
		t.Fatal(err)
	}

	// S + nL is the same scalar mod L: a verifier without the S < L check
	// accepts it. Ours must not, for every n that still fits in 256 bits.
	S := leInt(sig[32:])
	tried := 0
	for n := int64(1); ; n++ {
		Sn := new(big.Int).Add(S, new(big.Int).Mul(big.NewInt(n), edL))
		if Sn.BitLen() > 256 {
			break
		}
		tried++
		m := append(bytes.Clone(sig[:32]), leBytes32(Sn)...)
		if err := pub.Verify(msg, m); err != ErrBadSignature {
			t.Errorf("S + %d·L accepted: %v", n, err)
		}
	}
	if tried == 0 {
		t.Fatal("no S + nL variant fits in 32 bytes")
	}
	// The same for the Ed25519 half of a hybrid signature.
	org, err := GenerateOrgKey(testRand(13))
	if err != nil {
		t.Fatal(err)
	}
	hsig, err := org.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	hS := new(big.Int).Add(leInt(hsig[32:64]), edL)
	hm := bytes.Clone(hsig)
	copy(hm[32:64], leBytes32(hS))
	if err := org.Public().Verify(msg, hm); err != ErrBadSignature {
		t.Errorf("hybrid signature with S + L accepted: %v", err)
	}
	// Truncated and extended signatures.
	for _, m := range [][]byte{nil, sig[:63], append(bytes.Clone(sig), 0)} {
		if err := pub.Verify(msg, m); err != ErrBadSignature {
			t.Errorf("%d-byte signature: %v, want ErrBadSignature", len(m), err)
		}
	}

	// Non-canonical R: the CCTV vectors whose only defect is a
	// non-canonical R (canonical, non-small-order A; no low-order residue;
	// k computed over the R bytes as sent) are accepted by a lenient
	// verifier and must be rejected by ours.
	nonCanonR := 0
	for _, v := range loadCCTVEd25519(t) {
		f := map[string]bool{}
		for _, fl := range v.Flags {
			f[fl] = true
		}
		if !f["non_canonical_R"] || f["non_canonical_A"] || f["low_order_A"] || f["low_order_residue"] || f["reencoded_k"] {
			continue
		}
		if !lenientEd25519Verify(v.Key, []byte(v.Msg), v.Sig) {
			t.Errorf("vector %d: lenient reference rejects it; the test premise is wrong", v.Number)
			continue
		}
		k, err := NewIdentitySigningPublicKey(v.Key)
		if err != nil {
			t.Errorf("vector %d: key rejected: %v", v.Number, err)
			continue
		}
		if err := k.Verify([]byte(v.Msg), v.Sig); err != ErrBadSignature {
			t.Errorf("vector %d: non-canonical R accepted: %v", v.Number, err)
		}
		nonCanonR++
	}
	if nonCanonR == 0 {
		t.Fatal("no non-canonical-R vector was tested")
	}
	// The lenient reference accepts the honest signature too (sanity).
	if !lenientEd25519Verify(pub.Raw(), msg, sig) {
		t.Fatal("lenient reference rejects an honest signature")
	}

	// Small-order keys: the 8 canonical encodings are ErrLowOrder; their 6
	// alternative encodings (y ≥ p, or x = −0) are ErrNonCanonical
	// (CCTV ed25519/README.md "Low-order edwards25519 point encodings").
	for _, c := range []struct {
		hex  string
		want error
	}{
		{"0000000000000000000000000000000000000000000000000000000000000000", ErrLowOrder},
		{"0000000000000000000000000000000000000000000000000000000000000080", ErrLowOrder},
		{"0100000000000000000000000000000000000000000000000000000000000000", ErrLowOrder},
		{"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", ErrLowOrder},
		{"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", ErrLowOrder},
		{"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", ErrLowOrder},
		{"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", ErrLowOrder},
		{"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", ErrLowOrder},
		{"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", ErrNonCanonical},
		{"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", ErrNonCanonical},
		{"0100000000000000000000000000000000000000000000000000000000000080", ErrNonCanonical},
		{"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", ErrNonCanonical},
		{"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", ErrNonCanonical},
		{"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", ErrNonCanonical},
	} {
		raw, _ := hex.DecodeString(c.hex)
		if _, err := NewIdentitySigningPublicKey(raw); err != c.want {
			t.Errorf("Ed25519 key %s: %v, want %v", c.hex, err, c.want)
		}
		if _, err := ParseIdentitySigningPublicKey(append([]byte{byte(TagIdentitySigning)}, raw...)); err != c.want {
			t.Errorf("tagged Ed25519 key %s: %v, want %v", c.hex, err, c.want)
		}
		// The hybrid keys' Ed25519 half is checked the same way.
		hraw := bytes.Clone(org.Public().Bytes())
		copy(hraw[1:33], raw)
		if _, err := ParseOrgPublicKey(hraw); err != c.want {
			t.Errorf("hybrid key with Ed25519 half %s: %v, want %v", c.hex, err, c.want)
		}
	}

	// Non-canonical encodings y + p for every y < 19
	// that is on the curve, with either sign bit. All ErrNonCanonical.
	nonCanonA := 0
	for y := int64(0); y < 19; y++ {
		for _, sign := range []byte{0, 0x80} {
			e := leBytes32(new(big.Int).Add(x25519P, big.NewInt(y)))
			e[31] |= sign
			if _, err := new(edwards25519.Point).SetBytes(e); err != nil {
				continue // not a point
			}
			nonCanonA++
			if _, err := NewIdentitySigningPublicKey(e); err != ErrNonCanonical {
				t.Errorf("Ed25519 key y = %d + p, sign %#x: %v, want ErrNonCanonical", y, sign, err)
			}
		}
	}
	if nonCanonA < 6 {
		t.Errorf("only %d non-canonical encodings found", nonCanonA)
	}
	// Not a point at all: ErrMalformed.
	notPoint := 0
	for y := int64(2); y < 40 && notPoint == 0; y++ {
		e := leBytes32(big.NewInt(y))
		if _, err := new(edwards25519.Point).SetBytes(e); err == nil {
			continue
		}
		notPoint++
		if _, err := NewIdentitySigningPublicKey(e); err != ErrMalformed {
			t.Errorf("non-point y = %d: %v, want ErrMalformed", y, err)
		}
	}
	if notPoint == 0 {
		t.Error("found no non-point to test")
	}
	t.Logf("S+nL variants: %d; non-canonical-R vectors: %d; non-canonical (y ≥ p) keys: %d", tried, nonCanonR, nonCanonA)
}

// TestHybridBothHalvesRequired: a hybrid signature verifies only if both
// its Ed25519 and its ML-DSA-65 halves do, for every role.
func TestHybridBothHalvesRequired(t *testing.T) {
	msg := []byte("checkpoint body")
	type signer struct {
		name   string
		sign   func([]byte) ([]byte, error)
		verify func(msg, sig []byte) error
	}
	org, err := GenerateOrgKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := GenerateDirectoryKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := GenerateLogKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []signer{
		{"org", org.Sign, org.Public().Verify},
		{"directory", dir.Sign, dir.Public().Verify},
		{"log", lg.Sign, lg.Public().Verify},
	} {
		sig, err := s.sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.verify(msg, sig); err != nil {
			t.Fatalf("%s: valid signature: %v", s.name, err)
		}
		for _, half := range []struct {
			name string
			at   int
		}{{"Ed25519 half", 10}, {"ML-DSA-65 half", 64 + 100}, {"ML-DSA-65 tail", len(sig) - 1}} {
			bad := bytes.Clone(sig)
			bad[half.at] ^= 0x01
			if err := s.verify(msg, bad); !errors.Is(err, ErrBadSignature) {
				t.Errorf("%s: corrupted %s verified: %v", s.name, half.name, err)
			}
		}
		// A valid Ed25519 half spliced onto another message's ML-DSA half.
		other, err := s.sign([]byte("another body"))
		if err != nil {
			t.Fatal(err)
		}
		spliced := append(bytes.Clone(sig[:64]), other[64:]...)
		if err := s.verify(msg, spliced); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: spliced ML-DSA half verified: %v", s.name, err)
		}
		spliced = append(bytes.Clone(other[:64]), sig[64:]...)
		if err := s.verify(msg, spliced); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: spliced Ed25519 half verified: %v", s.name, err)
		}
	}
}

// TestKeyTypesIncomparable: every key value type, and DeviceIdentity, is
// not comparable, so == cannot compare key material (pointers to keys still
// compare by identity, as all pointers do; use Equal).
func TestKeyTypesIncomparable(t *testing.T) {
	for _, v := range []any{
		IdentitySigningPublicKey{}, IdentitySigningPrivateKey{},
		IdentityDHPublicKey{}, IdentityDHPrivateKey{},
		SignedPrekeyPublicKey{}, SignedPrekeyPrivateKey{},
		OneTimePrekeyPublicKey{}, OneTimePrekeyPrivateKey{},
		RatchetDHPublicKey{}, RatchetDHPrivateKey{},
		EphemeralDHPublicKey{}, EphemeralDHPrivateKey{},
		KEMPrekeyPublicKey{}, KEMPrekeyPrivateKey{},
		RatchetKEMPublicKey{}, RatchetKEMPrivateKey{},
		OrgPublicKey{}, OrgPrivateKey{}, DirectoryPublicKey{}, DirectoryPrivateKey{},
		LogPublicKey{}, LogPrivateKey{},
		DeviceIdentity{}, DeviceIdentityPrivate{},
	} {
		if typ := reflect.TypeOf(v); typ.Comparable() {
			t.Errorf("%v is comparable with ==", typ)
		}
	}
}
