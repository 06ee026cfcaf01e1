package pqxdh

// PQXDH tests: agreement, bundle checks (T07: no classical fallback),
// one-time prekey reuse (T09), tampering with the initial message, and
// strict parsing of both wire formats. Helpers are prefixed "pt" so that
// they do not collide with other test files.

import (
	"bytes"
	crand "crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/ratchet"
)

var ptTime = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func ptMust(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ptResponder is a responder device with a full prekey set: signed
// prekeys 1 and 2, one-time X25519 prekeys 100–102, one-time KEM prekeys
// 200–202 and the last-resort KEM prekey 300.
type ptResponder struct {
	id      *keys.DeviceIdentityPrivate
	spk     map[uint32]*keys.SignedPrekeyPrivateKey
	opk     map[uint32]*keys.OneTimePrekeyPrivateKey
	kem     map[uint32]*keys.KEMPrekeyPrivateKey
	spkPub  map[uint32]*keys.SignedPrekey
	kemPub  map[uint32]*keys.KEMPrekey
	prekeys *Prekeys
}

const ptLastResort = 300

func ptNewResponder(t testing.TB) *ptResponder {
	t.Helper()
	id, err := keys.GenerateDeviceIdentity(crand.Reader)
	ptMust(t, err)
	r := &ptResponder{id: id, spk: map[uint32]*keys.SignedPrekeyPrivateKey{}, opk: map[uint32]*keys.OneTimePrekeyPrivateKey{},
		kem: map[uint32]*keys.KEMPrekeyPrivateKey{}, spkPub: map[uint32]*keys.SignedPrekey{}, kemPub: map[uint32]*keys.KEMPrekey{},
		prekeys: NewPrekeys()}
	for _, i := range []uint32{1, 2} {
		k, err := keys.GenerateSignedPrekeyKey(crand.Reader)
		ptMust(t, err)
		r.spk[i], r.spkPub[i] = k, keys.SignSignedPrekey(i, ptTime, k.Public(), id.Signing)
		r.prekeys.AddSignedPrekey(i, k)
	}
	for _, i := range []uint32{100, 101, 102} {
		k, err := keys.GenerateOneTimePrekey(crand.Reader)
		ptMust(t, err)
		r.opk[i] = k
		r.prekeys.AddOneTimePrekey(i, k)
	}
	for _, i := range []uint32{200, 201, 202, ptLastResort} {
		k, err := keys.GenerateKEMPrekeyKey(crand.Reader)
		ptMust(t, err)
		r.kem[i], r.kemPub[i] = k, keys.SignKEMPrekey(i, ptTime, i == ptLastResort, k.Public(), id.Signing)
		r.prekeys.AddKEMPrekey(i, k, i == ptLastResort)
	}
	return r
}

// bundle returns a bundle with signed prekey 1, one-time prekey opk (0 for
// none) and KEM prekey kem.
func (r *ptResponder) bundle(opk, kem uint32) *Bundle {
	b := &Bundle{Identity: r.id.Public(), SignedPrekey: r.spkPub[1], KEMPrekey: r.kemPub[kem]}
	if opk != 0 {
		b.OneTimePrekey = &OneTimePrekey{ID: opk, Key: r.opk[opk].Public()}
	}
	return b
}

// respond is the responder's side as a client runs it: look the prekeys
// up in the set, then run Respond.
func (r *ptResponder) respond(m *InitialMessage) (*Result, error) {
	k, err := r.prekeys.Lookup(m)
	if err != nil {
		return nil, err
	}
	return Respond(r.id, m, k)
}

func ptInitiator(t testing.TB) *keys.DeviceIdentityPrivate {
	t.Helper()
	id, err := keys.GenerateDeviceIdentity(crand.Reader)
	ptMust(t, err)
	return id
}

func ptInitiate(t testing.TB, a *keys.DeviceIdentityPrivate, b *Bundle) (*InitialMessage, *Result) {
	t.Helper()
	m, r, err := Initiate(crand.Reader, a, b)
	ptMust(t, err)
	return m, r
}

// ptFirstMessage runs the ratchet on both results: the initiator's first
// message and the responder's attempt to decrypt it.
func ptFirstMessage(t testing.TB, ar, br *Result, spkPub *keys.SignedPrekeyPublicKey, spk *keys.SignedPrekeyPrivateKey, kemPub *keys.KEMPrekeyPublicKey, kem *keys.KEMPrekeyPrivateKey, m *InitialMessage) error {
	t.Helper()
	pre, err := m.Marshal()
	ptMust(t, err)
	a, err := ratchet.NewInitiator(ratchet.Config{}, ratchet.Params{SharedKey: ar.SharedKey, AD: ar.AD, Self: ar.Initiator, Peer: ar.Responder}, spkPub, kemPub, pre)
	ptMust(t, err)
	b, err := ratchet.NewResponder(ratchet.Config{}, ratchet.Params{SharedKey: br.SharedKey, AD: br.AD, Self: br.Responder, Peer: br.Initiator}, spk, kem)
	ptMust(t, err)
	ct, err := a.Encrypt([]byte("first"))
	ptMust(t, err)
	got, err := b.Decrypt(ct)
	if err == nil && !bytes.Equal(got.Plaintext, []byte("first")) {
		t.Fatalf("first message decrypted to %q", got.Plaintext)
	}
	return err
}

func TestPQXDHAgreement(t *testing.T) {
	r := ptNewResponder(t)
	a := ptInitiator(t)
	for _, c := range []struct {
		name     string
		opk, kem uint32
	}{
		{"with one-time prekey, one-time KEM prekey", 100, 200},
		{"without one-time prekey, one-time KEM prekey", 0, 201},
		{"with one-time prekey, last-resort KEM prekey", 101, ptLastResort},
		{"without one-time prekey, last-resort KEM prekey", 0, ptLastResort},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, ar := ptInitiate(t, a, r.bundle(c.opk, c.kem))
			br, err := r.respond(m)
			ptMust(t, err)
			if !ar.Equal(br) || !bytes.Equal(ar.SharedKey, br.SharedKey) || ar.Transcript != br.Transcript {
				t.Fatal("initiator and responder disagree")
			}
			if len(ar.SharedKey) != SharedKeySize {
				t.Fatalf("SK is %d bytes", len(ar.SharedKey))
			}
			for _, res := range []*Result{ar, br} {
				if res.OneTimePrekeyUsed != (c.opk != 0) || res.LastResortKEM != (c.kem == ptLastResort) {
					t.Fatalf("flags: OneTimePrekeyUsed %v LastResortKEM %v", res.OneTimePrekeyUsed, res.LastResortKEM)
				}
				if !res.Initiator.Equal(a.Public()) || !res.Responder.Equal(r.id.Public()) {
					t.Fatal("identities in the result")
				}
				// AD = label || Encode(IK_A) || Encode(IK_B) || transcript.
				want := append(append(append(append(append([]byte(nil), a.Public().Signing.Bytes()...), a.Public().DH.Bytes()...),
					r.id.Public().Signing.Bytes()...), r.id.Public().DH.Bytes()...), res.Transcript[:]...)
				if !bytes.HasSuffix(res.AD, want) {
					t.Fatal("AD does not end with both identities and the transcript")
				}
			}
			// A second run against the same bundle gives a different SK
			// (fresh ephemeral and encapsulation).
			_, ar2 := ptInitiate(t, a, r.bundle(c.opk, c.kem))
			if ar2.Equal(ar) {
				t.Fatal("two runs gave the same SK")
			}
			if err := ptFirstMessage(t, ar, br, r.spkPub[1].Key, r.spk[1], r.kemPub[c.kem].Key, r.kem[c.kem], m); err != nil {
				t.Fatalf("ratchet on agreed SK: %v", err)
			}
		})
	}
}

// TestPQXDHWrongPrekeys: a responder that uses the wrong private key for
// any prekey derives a different SK, and the ratchet's first message then
// fails to decrypt.
func TestPQXDHWrongPrekeys(t *testing.T) {
	r := ptNewResponder(t)
	a := ptInitiator(t)
	m, ar := ptInitiate(t, a, r.bundle(100, 200))
	good, err := r.prekeys.Lookup(m)
	ptMust(t, err)
	other := ptNewResponder(t)
	for _, c := range []struct {
		name string
		self *keys.DeviceIdentityPrivate
		k    ResponderKeys
	}{
		{"signed prekey", r.id, ResponderKeys{SignedPrekey: r.spk[2], OneTimePrekey: good.OneTimePrekey, KEMPrekey: good.KEMPrekey}},
		{"one-time prekey", r.id, ResponderKeys{SignedPrekey: good.SignedPrekey, OneTimePrekey: r.opk[101], KEMPrekey: good.KEMPrekey}},
		{"KEM prekey", r.id, ResponderKeys{SignedPrekey: good.SignedPrekey, OneTimePrekey: good.OneTimePrekey, KEMPrekey: r.kem[201]}},
		{"last-resort KEM prekey", r.id, ResponderKeys{SignedPrekey: good.SignedPrekey, OneTimePrekey: good.OneTimePrekey, KEMPrekey: r.kem[ptLastResort]}},
		{"identity key", other.id, good},
	} {
		br, err := Respond(c.self, m, c.k)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if br.Equal(ar) || bytes.Equal(br.SharedKey, ar.SharedKey) {
			t.Fatalf("%s: wrong key gives the same SK", c.name)
		}
		spk := c.k.SignedPrekey
		if err := ptFirstMessage(t, ar, br, r.spkPub[1].Key, spk, r.kemPub[200].Key, c.k.KEMPrekey, m); !errors.Is(err, ratchet.ErrDecrypt) {
			t.Fatalf("%s: first ratchet message: %v, want ratchet.ErrDecrypt", c.name, err)
		}
	}
	// Omitting or adding the one-time prekey the message names is refused.
	if _, err := Respond(r.id, m, ResponderKeys{SignedPrekey: good.SignedPrekey, KEMPrekey: good.KEMPrekey}); !errors.Is(err, ErrPrekeyMismatch) {
		t.Fatalf("missing one-time prekey: %v", err)
	}
	m2, _ := ptInitiate(t, a, r.bundle(0, 201))
	if _, err := Respond(r.id, m2, ResponderKeys{SignedPrekey: good.SignedPrekey, OneTimePrekey: r.opk[100], KEMPrekey: r.kem[201]}); !errors.Is(err, ErrPrekeyMismatch) {
		t.Fatalf("extra one-time prekey: %v", err)
	}
	if _, err := Respond(r.id, m, ResponderKeys{OneTimePrekey: good.OneTimePrekey, KEMPrekey: good.KEMPrekey}); !errors.Is(err, ErrPrekeyMismatch) {
		t.Fatalf("missing signed prekey: %v", err)
	}
	if _, err := Respond(r.id, m, ResponderKeys{SignedPrekey: good.SignedPrekey, OneTimePrekey: good.OneTimePrekey}); !errors.Is(err, ErrPrekeyMismatch) {
		t.Fatalf("missing KEM prekey: %v", err)
	}
}

// TestPQXDHTamperInitialMessage: any change to the initial message makes
// the responder fail or derive a different SK.
func TestPQXDHTamperInitialMessage(t *testing.T) {
	r := ptNewResponder(t)
	a := ptInitiator(t)
	other := ptInitiator(t)
	for _, opk := range []uint32{0, 100} {
		m, ar := ptInitiate(t, a, r.bundle(opk, 200))
		otherEph, err := keys.GenerateEphemeralDHKey(crand.Reader)
		ptMust(t, err)
		reEncCT, _, err := r.kemPub[200].Key.Encapsulate(crand.Reader)
		ptMust(t, err)
		u32 := func(v uint32) *uint32 { return &v }
		edits := map[string]func(m *InitialMessage){
			"ephemeral":                  func(m *InitialMessage) { m.Ephemeral = otherEph.Public() },
			"ciphertext bit":             func(m *InitialMessage) { m.KEMCiphertext[0] ^= 1 },
			"ciphertext last bit":        func(m *InitialMessage) { m.KEMCiphertext[len(m.KEMCiphertext)-1] ^= 0x80 },
			"ciphertext re-encapsulated": func(m *InitialMessage) { m.KEMCiphertext = reEncCT },
			"signed prekey id":           func(m *InitialMessage) { m.SignedPrekeyID = 2 },
			"unknown signed prekey id":   func(m *InitialMessage) { m.SignedPrekeyID = 9 },
			"KEM prekey id":              func(m *InitialMessage) { m.KEMPrekeyID = 201 },
			"KEM prekey id to last resort": func(m *InitialMessage) {
				m.KEMPrekeyID, m.LastResort = ptLastResort, true
			},
			"last-resort flag":      func(m *InitialMessage) { m.LastResort = !m.LastResort },
			"initiator identity":    func(m *InitialMessage) { m.Identity = other.Public() },
			"initiator DH key":      func(m *InitialMessage) { m.Identity.DH = other.Public().DH },
			"initiator signing key": func(m *InitialMessage) { m.Identity.Signing = other.Public().Signing },
		}
		if opk != 0 {
			edits["one-time prekey id"] = func(m *InitialMessage) { m.OneTimePrekeyID = u32(101) }
			edits["one-time prekey dropped"] = func(m *InitialMessage) { m.OneTimePrekeyID = nil }
			edits["unknown one-time prekey id"] = func(m *InitialMessage) { m.OneTimePrekeyID = u32(999) }
		} else {
			edits["one-time prekey added"] = func(m *InitialMessage) { m.OneTimePrekeyID = u32(100) }
		}
		for name, edit := range edits {
			mm := *m
			mm.KEMCiphertext = bytes.Clone(m.KEMCiphertext)
			edit(&mm)
			br, err := r.respond(&mm)
			if err == nil && br.Equal(ar) {
				t.Fatalf("opk %d, %s: responder derives the initiator's SK", opk, name)
			}
		}
		// Every single-bit flip (low and high bit of each byte) of the
		// encoding either fails to parse, names keys the responder does not
		// hold, or changes SK.
		enc, err := m.Marshal()
		ptMust(t, err)
		ctStart := len(enc) - keys.KEMCiphertextSize
		for i := range enc {
			// In -short mode every 16th ciphertext byte (each costs a
			// decapsulation); all of them otherwise.
			if testing.Short() && i > ctStart && i%16 != 0 {
				continue
			}
			for _, mask := range []byte{0x01, 0x80} {
				bad := bytes.Clone(enc)
				bad[i] ^= mask
				mm, err := ParseInitialMessage(bad)
				if err != nil {
					continue
				}
				if br, err := r.respond(mm); err == nil && br.Equal(ar) {
					t.Fatalf("opk %d: flipping bit %#x of byte %d leaves SK unchanged", opk, mask, i)
				}
			}
		}
		// The untampered message still agrees (nothing above consumed it).
		br, err := r.respond(m)
		ptMust(t, err)
		if !br.Equal(ar) {
			t.Fatal("untampered message no longer agrees")
		}
	}
}

func TestPQXDHSignedPrekeyChecks(t *testing.T) {
	r := ptNewResponder(t)
	a := ptInitiator(t)
	other := ptNewResponder(t)
	spk := r.spkPub[1]
	flipped := *spk
	flipped.Signature = bytes.Clone(spk.Signature)
	flipped.Signature[10] ^= 4
	for name, bad := range map[string]*keys.SignedPrekey{
		"flipped signature bit":       &flipped,
		"signed by another identity":  keys.SignSignedPrekey(1, ptTime, spk.Key, other.id.Signing),
		"key swapped, signature kept": {ID: 1, Created: spk.Created, Key: other.spkPub[1].Key, Signature: spk.Signature},
		"another identity's prekey":   other.spkPub[1],
		"id changed":                  {ID: 2, Created: spk.Created, Key: spk.Key, Signature: spk.Signature},
		"created changed":             {ID: 1, Created: spk.Created.Add(time.Second), Key: spk.Key, Signature: spk.Signature},
		"empty signature":             {ID: 1, Created: spk.Created, Key: spk.Key},
		"KEM prekey signature reused": {ID: 1, Created: spk.Created, Key: spk.Key, Signature: r.kemPub[200].Signature},
	} {
		b := r.bundle(100, 200)
		b.SignedPrekey = bad
		m, res, err := Initiate(crand.Reader, a, b)
		if !errors.Is(err, keys.ErrUnsignedPrekey) || m != nil || res != nil {
			t.Fatalf("%s: Initiate = %v, want keys.ErrUnsignedPrekey and no result", name, err)
		}
	}
	// The whole identity swapped: prekeys signed by the original identity
	// do not verify under the new one.
	b := r.bundle(100, 200)
	b.Identity = other.id.Public()
	if _, _, err := Initiate(crand.Reader, a, b); !errors.Is(err, keys.ErrUnsignedPrekey) {
		t.Fatalf("identity swapped: %v", err)
	}
	b = r.bundle(100, 200)
	b.SignedPrekey = nil
	if _, _, err := Initiate(crand.Reader, a, b); !errors.Is(err, ErrMissingSignedPrekey) {
		t.Fatalf("no signed prekey: %v", err)
	}
	if _, err := b.Marshal(); !errors.Is(err, ErrMissingSignedPrekey) {
		t.Fatalf("Marshal without signed prekey: %v", err)
	}
}

// TestT07KEMStrip (PQXDH part): a bundle whose ML-KEM prekey is missing,
// unsigned, or swapped is refused; there is no classical fallback.
func TestT07KEMStrip(t *testing.T) {
	r := ptNewResponder(t)
	a := ptInitiator(t)
	other := ptNewResponder(t)
	noFallback := func(name string, b *Bundle, want error) {
		t.Helper()
		m, res, err := Initiate(crand.Reader, a, b)
		if !errors.Is(err, want) {
			t.Fatalf("%s: Initiate = %v, want %v", name, err, want)
		}
		if m != nil || res != nil {
			t.Fatalf("%s: Initiate returned a message or result with its error", name)
		}
	}
	for _, opk := range []uint32{0, 100} {
		b := r.bundle(opk, 200)
		b.KEMPrekey = nil
		noFallback("KEM prekey stripped", b, ErrMissingKEMPrekey)
		if _, err := b.Marshal(); !errors.Is(err, ErrMissingKEMPrekey) {
			t.Fatalf("Marshal without KEM prekey: %v", err)
		}
		b = r.bundle(opk, 200)
		b.KEMPrekey = &keys.KEMPrekey{ID: 200, Created: ptTime, Signature: r.kemPub[200].Signature}
		noFallback("KEM prekey without key", b, ErrMissingKEMPrekey)
		if _, err := b.Marshal(); !errors.Is(err, ErrMissingKEMPrekey) {
			t.Fatalf("Marshal with nil KEM key: %v", err)
		}

		kp := r.kemPub[200]
		flipped := *kp
		flipped.Signature = bytes.Clone(kp.Signature)
		flipped.Signature[63] ^= 0x10
		swapped := keys.SignKEMPrekey(200, ptTime, false, other.kemPub[200].Key, other.id.Signing)
		for name, bad := range map[string]*keys.KEMPrekey{
			"flipped signature bit":                  &flipped,
			"signed by another identity":             keys.SignKEMPrekey(200, ptTime, false, kp.Key, other.id.Signing),
			"swapped for another identity's KEM key": swapped,
			"swapped key, original signature":        {ID: 200, Created: kp.Created, Key: other.kemPub[200].Key, Signature: kp.Signature},
			"last-resort flag flipped":               {ID: 200, Created: kp.Created, LastResort: true, Key: kp.Key, Signature: kp.Signature},
			"id changed":                             {ID: 201, Created: kp.Created, Key: kp.Key, Signature: kp.Signature},
			"signed prekey's signature reused":       {ID: 200, Created: kp.Created, Key: kp.Key, Signature: r.spkPub[1].Signature},
			"empty signature":                        {ID: 200, Created: kp.Created, Key: kp.Key},
			"one-time key relabelled as last resort": {ID: ptLastResort, Created: kp.Created, LastResort: true, Key: kp.Key, Signature: r.kemPub[ptLastResort].Signature},
		} {
			b := r.bundle(opk, 200)
			b.KEMPrekey = bad
			noFallback(name, b, keys.ErrUnsignedPrekey)
		}
	}

	// A bundle encoding with the KEM prekey section cut short, at every
	// length, does not parse.
	for _, opk := range []uint32{0, 100} {
		enc, err := r.bundle(opk, 200).Marshal()
		ptMust(t, err)
		kemStart := ptBundleKEMOffset(opk != 0)
		if len(enc) != kemStart+4+8+1+kemTagged+sigSize {
			t.Fatalf("bundle is %d bytes, layout says %d", len(enc), kemStart+4+8+1+kemTagged+sigSize)
		}
		for n := 0; n < len(enc); n++ {
			if _, err := ParseBundle(enc[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("opk %d: bundle truncated to %d bytes (KEM section at %d): %v", opk, n, kemStart, err)
			}
		}
		// The KEM section removed entirely, the rest intact.
		if _, err := ParseBundle(enc[:kemStart]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("bundle without KEM section: %v", err)
		}
	}
}

func TestT09OneTimePrekeyReuse(t *testing.T) {
	t.Run("one-time prekey and one-time KEM prekey", func(t *testing.T) {
		r := ptNewResponder(t)
		x0, k0 := r.prekeys.OneTimeCount()
		bundle := r.bundle(100, 200) // handed to two initiators
		m1, ar1 := ptInitiate(t, ptInitiator(t), bundle)
		m2, _ := ptInitiate(t, ptInitiator(t), bundle)
		br1, err := r.respond(m1)
		ptMust(t, err)
		if !br1.Equal(ar1) {
			t.Fatal("first initiator disagrees")
		}
		r.prekeys.Consume(m1) // the first ratchet message decrypted
		if _, err := r.prekeys.Lookup(m2); !errors.Is(err, ErrUnknownPrekey) {
			t.Fatalf("second initiator: Lookup = %v, want ErrUnknownPrekey", err)
		}
		if _, err := r.respond(m1); !errors.Is(err, ErrUnknownPrekey) {
			t.Fatalf("first initial message replayed: %v, want ErrUnknownPrekey", err)
		}
		x1, k1 := r.prekeys.OneTimeCount()
		if x1 != x0-1 || k1 != k0-1 {
			t.Fatalf("OneTimeCount %d, %d -> %d, %d; want both one less", x0, k0, x1, k1)
		}
		if _, ok := r.prekeys.oneTime[100]; ok {
			t.Fatal("consumed one-time prekey still held")
		}
		if _, ok := r.prekeys.kem[200]; ok {
			t.Fatal("consumed one-time KEM prekey still held")
		}
		// The other keys are untouched.
		if _, err := r.respond(ptMustInitiate(t, r.bundle(101, 201))); err != nil {
			t.Fatalf("fresh keys after consumption: %v", err)
		}
	})
	t.Run("one-time prekey only (last-resort KEM)", func(t *testing.T) {
		r := ptNewResponder(t)
		bundle := r.bundle(100, ptLastResort)
		m1, _ := ptInitiate(t, ptInitiator(t), bundle)
		m2, _ := ptInitiate(t, ptInitiator(t), bundle)
		_, err := r.respond(m1)
		ptMust(t, err)
		r.prekeys.Consume(m1)
		if _, err := r.prekeys.Lookup(m2); !errors.Is(err, ErrUnknownPrekey) {
			t.Fatalf("second initiator: %v, want ErrUnknownPrekey", err)
		}
		if _, ok := r.prekeys.kem[ptLastResort]; !ok {
			t.Fatal("last-resort KEM prekey deleted")
		}
	})
	t.Run("one-time KEM prekey only (no one-time X25519 prekey)", func(t *testing.T) {
		r := ptNewResponder(t)
		bundle := r.bundle(0, 201)
		m1, _ := ptInitiate(t, ptInitiator(t), bundle)
		m2, _ := ptInitiate(t, ptInitiator(t), bundle)
		_, err := r.respond(m1)
		ptMust(t, err)
		r.prekeys.Consume(m1)
		if _, err := r.prekeys.Lookup(m2); !errors.Is(err, ErrUnknownPrekey) {
			t.Fatalf("second initiator: %v, want ErrUnknownPrekey", err)
		}
	})
	t.Run("last-resort KEM prekey reused, flagged", func(t *testing.T) {
		r := ptNewResponder(t)
		x0, k0 := r.prekeys.OneTimeCount()
		bundle := r.bundle(0, ptLastResort)
		for i := range 3 {
			m, ar := ptInitiate(t, ptInitiator(t), bundle)
			if !ar.LastResortKEM || !m.LastResort {
				t.Fatalf("initiator %d: last-resort use not flagged", i)
			}
			br, err := r.respond(m)
			if err != nil {
				t.Fatalf("initiator %d: %v", i, err)
			}
			if !br.Equal(ar) || !br.LastResortKEM {
				t.Fatalf("initiator %d: disagreement or unflagged (LastResortKEM %v)", i, br.LastResortKEM)
			}
			r.prekeys.Consume(m)
			if _, ok := r.prekeys.kem[ptLastResort]; !ok {
				t.Fatal("last-resort KEM prekey deleted by Consume")
			}
		}
		if x, k := r.prekeys.OneTimeCount(); x != x0 || k != k0 {
			t.Fatalf("OneTimeCount changed: %d, %d -> %d, %d", x0, k0, x, k)
		}
	})
	t.Run("last-resort flag lies", func(t *testing.T) {
		r := ptNewResponder(t)
		m, _ := ptInitiate(t, ptInitiator(t), r.bundle(0, 200))
		m.LastResort = true // claims the one-time key is the last-resort one
		if _, err := r.prekeys.Lookup(m); !errors.Is(err, ErrUnknownPrekey) {
			t.Fatalf("one-time KEM key claimed last-resort: %v", err)
		}
		m, _ = ptInitiate(t, ptInitiator(t), r.bundle(0, ptLastResort))
		m.LastResort = false // hides the last-resort use
		if _, err := r.prekeys.Lookup(m); !errors.Is(err, ErrUnknownPrekey) {
			t.Fatalf("last-resort key claimed one-time: %v", err)
		}
		// Consume of a lying message deletes nothing it should not.
		r.prekeys.Consume(m)
		if _, ok := r.prekeys.kem[ptLastResort]; !ok {
			t.Fatal("a lying message made Consume delete the last-resort key")
		}
	})
	t.Run("unknown and removed prekeys", func(t *testing.T) {
		r := ptNewResponder(t)
		m, _ := ptInitiate(t, ptInitiator(t), r.bundle(100, 200))
		r.prekeys.RemoveSignedPrekey(1)
		if _, err := r.prekeys.Lookup(m); !errors.Is(err, ErrUnknownPrekey) {
			t.Fatalf("retired signed prekey: %v", err)
		}
	})
}

func ptMustInitiate(t testing.TB, b *Bundle) *InitialMessage {
	t.Helper()
	m, _ := ptInitiate(t, ptInitiator(t), b)
	return m
}

func TestPQXDHWireRoundTrip(t *testing.T) {
	r := ptNewResponder(t)
	a := ptInitiator(t)
	for _, c := range []struct{ opk, kem uint32 }{{100, 200}, {0, 200}, {0, ptLastResort}, {101, ptLastResort}} {
		b := r.bundle(c.opk, c.kem)
		enc, err := b.Marshal()
		ptMust(t, err)
		got, err := ParseBundle(enc)
		ptMust(t, err)
		if !got.Identity.Equal(b.Identity) || got.SignedPrekey.ID != b.SignedPrekey.ID || !got.SignedPrekey.Created.Equal(b.SignedPrekey.Created) ||
			!got.SignedPrekey.Key.Equal(b.SignedPrekey.Key) || !bytes.Equal(got.SignedPrekey.Signature, b.SignedPrekey.Signature) ||
			got.KEMPrekey.ID != b.KEMPrekey.ID || !got.KEMPrekey.Created.Equal(b.KEMPrekey.Created) || got.KEMPrekey.LastResort != b.KEMPrekey.LastResort ||
			!got.KEMPrekey.Key.Equal(b.KEMPrekey.Key) || !bytes.Equal(got.KEMPrekey.Signature, b.KEMPrekey.Signature) ||
			(got.OneTimePrekey == nil) != (b.OneTimePrekey == nil) {
			t.Fatalf("bundle %+v does not round-trip", c)
		}
		if b.OneTimePrekey != nil && (got.OneTimePrekey.ID != b.OneTimePrekey.ID || !got.OneTimePrekey.Key.Equal(b.OneTimePrekey.Key)) {
			t.Fatal("one-time prekey does not round-trip")
		}
		if re, err := got.Marshal(); err != nil || !bytes.Equal(re, enc) {
			t.Fatalf("re-encoding differs: %v", err)
		}
		// The parsed bundle's signatures verify and the run agrees.
		m, ar, err := Initiate(crand.Reader, a, got)
		ptMust(t, err)
		menc, err := m.Marshal()
		ptMust(t, err)
		pm, err := ParseInitialMessage(menc)
		ptMust(t, err)
		if !pm.Identity.Equal(m.Identity) || !pm.Ephemeral.Equal(m.Ephemeral) || pm.SignedPrekeyID != m.SignedPrekeyID ||
			pm.KEMPrekeyID != m.KEMPrekeyID || pm.LastResort != m.LastResort || !bytes.Equal(pm.KEMCiphertext, m.KEMCiphertext) ||
			(pm.OneTimePrekeyID == nil) != (m.OneTimePrekeyID == nil) || (m.OneTimePrekeyID != nil && *pm.OneTimePrekeyID != *m.OneTimePrekeyID) {
			t.Fatal("initial message does not round-trip")
		}
		if re, err := pm.Marshal(); err != nil || !bytes.Equal(re, menc) {
			t.Fatalf("initial message re-encoding differs: %v", err)
		}
		br, err := r.respond(pm)
		ptMust(t, err)
		if !br.Equal(ar) {
			t.Fatal("disagreement through the wire")
		}
	}
	// Encodings that cannot be made.
	m := ptMustInitiate(t, r.bundle(0, 200))
	m.KEMCiphertext = m.KEMCiphertext[:10]
	if _, err := m.Marshal(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short ciphertext: %v", err)
	}
	b := r.bundle(0, 200)
	b.KEMPrekey = &keys.KEMPrekey{ID: 1, Created: ptTime, Key: r.kemPub[200].Key, Signature: []byte{1, 2, 3}}
	if _, err := b.Marshal(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short signature: %v", err)
	}
}

// Offsets of the encodings (wire.go).
func ptBundleKEMOffset(hasOPK bool) int {
	off := 2 + ed25519Tagged + x25519Tagged + 4 + 8 + x25519Tagged + sigSize + 1
	if hasOPK {
		off += 4 + x25519Tagged
	}
	return off
}

const (
	ptBundleIDSig     = 2
	ptBundleIDDH      = ptBundleIDSig + ed25519Tagged
	ptBundleSPKID     = ptBundleIDDH + x25519Tagged
	ptBundleSPKCreate = ptBundleSPKID + 4
	ptBundleSPK       = ptBundleSPKCreate + 8
	ptBundleHasOPK    = ptBundleSPK + x25519Tagged + sigSize
	ptBundleOPK       = ptBundleHasOPK + 1 + 4
	ptMsgIDSig        = 2
	ptMsgIDDH         = ptMsgIDSig + ed25519Tagged
	ptMsgEph          = ptMsgIDDH + x25519Tagged
	ptMsgHasOPK       = ptMsgEph + x25519Tagged + 4
)

var ptAllTags = []keys.Tag{keys.TagIdentitySigning, keys.TagIdentityDH, keys.TagSignedPrekey, keys.TagOneTimePrekey, keys.TagKEMPrekey,
	keys.TagRatchetDH, keys.TagRatchetKEM, keys.TagEphemeralDH, keys.TagOrgSigning, keys.TagDirectorySign, keys.TagLogSigning}

func TestPQXDHParseRejects(t *testing.T) {
	r := ptNewResponder(t)
	type field struct {
		name string
		off  int
		tag  keys.Tag
	}
	type enc struct {
		name   string
		data   []byte
		parse  func([]byte) error
		typ    byte
		other  byte
		hasOPK int
		lrOff  int
		fields []field
	}
	var encs []enc
	for _, opk := range []uint32{0, 100} {
		b, err := r.bundle(opk, 200).Marshal()
		ptMust(t, err)
		kem := ptBundleKEMOffset(opk != 0)
		fs := []field{{"identity signing", ptBundleIDSig, keys.TagIdentitySigning}, {"identity DH", ptBundleIDDH, keys.TagIdentityDH},
			{"signed prekey", ptBundleSPK, keys.TagSignedPrekey}, {"KEM prekey", kem + 4 + 8 + 1, keys.TagKEMPrekey}}
		if opk != 0 {
			fs = append(fs, field{"one-time prekey", ptBundleOPK, keys.TagOneTimePrekey})
		}
		encs = append(encs, enc{name: fmt.Sprint("bundle opk=", opk), data: b, typ: typeBundle, other: typeInitialMessage,
			parse: func(d []byte) error { _, err := ParseBundle(d); return err }, hasOPK: ptBundleHasOPK, lrOff: kem + 4 + 8, fields: fs})

		m := ptMustInitiate(t, r.bundle(opk, 200))
		me, err := m.Marshal()
		ptMust(t, err)
		lr := ptMsgHasOPK + 1 + 4
		if opk != 0 {
			lr += 4
		}
		encs = append(encs, enc{name: fmt.Sprint("initial message opk=", opk), data: me, typ: typeInitialMessage, other: typeBundle,
			parse: func(d []byte) error { _, err := ParseInitialMessage(d); return err }, hasOPK: ptMsgHasOPK, lrOff: lr,
			fields: []field{{"identity signing", ptMsgIDSig, keys.TagIdentitySigning}, {"identity DH", ptMsgIDDH, keys.TagIdentityDH},
				{"ephemeral", ptMsgEph, keys.TagEphemeralDH}}})
	}
	malformed := func(e enc, what string, d []byte) {
		t.Helper()
		if err := e.parse(d); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s, %s: %v, want ErrMalformed", e.name, what, err)
		}
	}
	mod := func(d []byte, off int, v byte) []byte {
		d = bytes.Clone(d)
		d[off] = v
		return d
	}
	for _, e := range encs {
		if err := e.parse(e.data); err != nil {
			t.Fatalf("%s: valid encoding rejected: %v", e.name, err)
		}
		// Layout self-check: the offsets point at the expected values.
		if e.data[0] != e.typ || e.data[1] != version || (e.data[e.hasOPK] != 0 && e.data[e.hasOPK] != 1) || e.data[e.lrOff] > 1 {
			t.Fatalf("%s: layout offsets wrong", e.name)
		}
		for _, f := range e.fields {
			if keys.Tag(e.data[f.off]) != f.tag {
				t.Fatalf("%s: %s not at offset %d", e.name, f.name, f.off)
			}
		}

		malformed(e, "trailing byte", append(bytes.Clone(e.data), 0))
		malformed(e, "trailing bytes", append(bytes.Clone(e.data), make([]byte, 64)...))
		malformed(e, "empty", nil)
		for _, v := range []byte{0, 2, 0xff} {
			malformed(e, fmt.Sprint("version ", v), mod(e.data, 1, v))
		}
		for _, v := range []byte{0, e.other, 0x01, 0x05, 0x20, 0x23, 0xff} {
			malformed(e, fmt.Sprintf("type %#x", v), mod(e.data, 0, v))
		}
		for _, v := range []byte{2, 3, 0x80, 0xff} {
			malformed(e, fmt.Sprint("has_opk ", v), mod(e.data, e.hasOPK, v))
			malformed(e, fmt.Sprint("last_resort ", v), mod(e.data, e.lrOff, v))
		}
		// has_opk toggled: the rest no longer lines up, and either the
		// frame or the key read from the shifted bytes is refused.
		if err := e.parse(mod(e.data, e.hasOPK, 1-e.data[e.hasOPK])); !errors.Is(err, ErrMalformed) && !errors.Is(err, keys.ErrMalformed) {
			t.Fatalf("%s, has_opk toggled: %v", e.name, err)
		}
		for n := range len(e.data) {
			malformed(e, fmt.Sprint("truncated to ", n), e.data[:n])
		}
		// Every key field carrying another key type's tag.
		for _, f := range e.fields {
			for _, tag := range ptAllTags {
				if tag == f.tag {
					continue
				}
				err := e.parse(mod(e.data, f.off, byte(tag)))
				var ke *KeyError
				if !errors.As(err, &ke) || !errors.Is(err, keys.ErrWrongType) {
					t.Fatalf("%s: %s with tag %#x: %v, want a KeyError wrapping keys.ErrWrongType", e.name, f.name, tag, err)
				}
			}
			err := e.parse(mod(e.data, f.off, 0x7e))
			var ke *KeyError
			if !errors.As(err, &ke) || !errors.Is(err, keys.ErrMalformed) || errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: %s with an unknown tag: %v, want a KeyError wrapping keys.ErrMalformed", e.name, f.name, err)
			}
		}
	}
	// Low-order and non-canonical X25519 points inside the frames are key
	// errors too (T10 at the PQXDH layer).
	for _, e := range encs {
		for _, f := range e.fields {
			if f.tag == keys.TagIdentitySigning || f.tag == keys.TagKEMPrekey {
				continue
			}
			zero := bytes.Clone(e.data)
			clear(zero[f.off+1 : f.off+33])
			err := e.parse(zero)
			var ke *KeyError
			if !errors.As(err, &ke) || !errors.Is(err, keys.ErrLowOrder) {
				t.Fatalf("%s: %s all-zero point: %v, want KeyError wrapping keys.ErrLowOrder", e.name, f.name, err)
			}
			high := bytes.Clone(e.data)
			high[f.off+32] |= 0x80
			if err := e.parse(high); !errors.As(err, &ke) || !errors.Is(err, keys.ErrNonCanonical) {
				t.Fatalf("%s: %s top bit set: %v, want KeyError wrapping keys.ErrNonCanonical", e.name, f.name, err)
			}
		}
	}
	// Timestamps that do not fit an int64.
	b, err := r.bundle(0, 200).Marshal()
	ptMust(t, err)
	for _, off := range []int{ptBundleSPKCreate, ptBundleKEMOffset(false) + 4} {
		bad := bytes.Clone(b)
		bad[off] = 0x80
		if _, err := ParseBundle(bad); !errors.Is(err, ErrMalformed) {
			t.Fatalf("timestamp >= 2^63 at %d: %v", off, err)
		}
	}
}

// TestPQXDHRandomMutations feeds random mutations of valid encodings to the
// parsers: they return typed errors or values, never panic.
func TestPQXDHRandomMutations(t *testing.T) {
	r := ptNewResponder(t)
	b, err := r.bundle(100, 200).Marshal()
	ptMust(t, err)
	m, err := ptMustInitiate(t, r.bundle(100, 200)).Marshal()
	ptMust(t, err)
	rng := mrand.New(mrand.NewPCG(9, 9))
	for i := range 3000 {
		for _, src := range [][]byte{b, m} {
			d := bytes.Clone(src)
			for range 1 + rng.IntN(4) {
				d[rng.IntN(len(d))] = byte(rng.Uint32())
			}
			if rng.IntN(4) == 0 {
				d = d[:rng.IntN(len(d))]
			}
			for _, err := range []error{func() error { _, err := ParseBundle(d); return err }(), func() error { _, err := ParseInitialMessage(d); return err }()} {
				var ke *KeyError
				if err != nil && !errors.Is(err, ErrMalformed) && !errors.As(err, &ke) {
					t.Fatalf("mutation %d: untyped error %v", i, err)
				}
			}
		}
	}
}
