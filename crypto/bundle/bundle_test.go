package bundle

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/pqxdh"
	"github.com/moat-im/moat/crypto/ratchet"
	"github.com/moat-im/moat/crypto/sealed"
)

var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

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

// device holds a device's identity and the private halves of what it
// uploads.
type device struct {
	id      *keys.DeviceIdentityPrivate
	mailbox sealed.MailboxID
	spk     *keys.SignedPrekeyPrivateKey
	opks    map[uint32]*keys.OneTimePrekeyPrivateKey
	kems    map[uint32]*keys.KEMPrekeyPrivateKey
	ssk     *keys.SealedSenderPrivateKey
	upload  *Upload
}

// newDevice makes a device and its upload: a signed prekey, nOPK one-time
// and nKEM one-time KEM prekeys, a last-resort KEM prekey, a sealed-sender
// key and two KeyPackages.
func newDevice(t testing.TB, seed byte, nOPK, nKEM int) *device {
	t.Helper()
	r := detRand(seed)
	id, err := keys.GenerateDeviceIdentity(r)
	must(t, err)
	d := &device{id: id, mailbox: sealed.NewMailboxID([16]byte{1}, [16]byte{seed}),
		opks: map[uint32]*keys.OneTimePrekeyPrivateKey{}, kems: map[uint32]*keys.KEMPrekeyPrivateKey{}}
	d.spk, err = keys.GenerateSignedPrekeyKey(r)
	must(t, err)
	d.ssk, err = keys.GenerateSealedSenderKey(r)
	must(t, err)
	u := &Upload{
		SignedPrekey:    keys.SignSignedPrekey(1, testNow, d.spk.Public(), id.Signing),
		SealedSenderKey: keys.SignSealedSenderKey(3, testNow, testNow.Add(14*24*time.Hour), d.ssk.Public(), id.Signing),
		KeyPackages:     []*KeyPackageItem{SignKeyPackage(testKeyPackage(t), id.Signing), SignKeyPackage(testKeyPackage(t), id.Signing)},
	}
	for i := range nOPK {
		k, err := keys.GenerateOneTimePrekey(r)
		must(t, err)
		d.opks[uint32(10+i)] = k
		u.OneTimePrekeys = append(u.OneTimePrekeys, keys.SignOneTimePrekey(uint32(10+i), k.Public(), id.Signing))
	}
	for i := range nKEM + 1 {
		k, err := keys.GenerateKEMPrekeyKey(r)
		must(t, err)
		d.kems[uint32(1000+i)] = k
		u.KEMPrekeys = append(u.KEMPrekeys, keys.SignKEMPrekey(uint32(1000+i), testNow, i == nKEM, k.Public(), id.Signing))
	}
	d.upload = u
	return d
}

// serve builds the relay's response from d's upload, handing out the
// one-time prekey opk (0: none) and the KEM prekey kem.
func (d *device) serve(t testing.TB, opk, kem int) *Response {
	t.Helper()
	u := d.upload
	b := &pqxdh.Bundle{Identity: d.id.Public(), SignedPrekey: u.SignedPrekey, KEMPrekey: u.KEMPrekeys[kem]}
	r := &Response{Bundle: b, SealedSenderKey: u.SealedSenderKey}
	if opk > 0 {
		p := u.OneTimePrekeys[opk-1]
		b.OneTimePrekey = &pqxdh.OneTimePrekey{ID: p.ID, Key: p.Key}
		r.OneTimePrekeySignature = p.Signature
	}
	return r
}

func marshal(t testing.TB, r *Response) []byte {
	t.Helper()
	b, err := r.Marshal()
	must(t, err)
	return b
}

// TestUploadRoundTrip: an upload parses back to itself and verifies.
func TestUploadRoundTrip(t *testing.T) {
	d := newDevice(t, 1, MaxOneTimePrekeys, MaxKEMPrekeys-1)
	enc, err := d.upload.Marshal()
	must(t, err)
	u, err := ParseUpload(enc)
	must(t, err)
	re, err := u.Marshal()
	must(t, err)
	if !bytes.Equal(re, enc) {
		t.Fatal("upload does not re-encode")
	}
	must(t, u.Verify(d.id.Public().Signing))
	if len(u.OneTimePrekeys) != MaxOneTimePrekeys || len(u.KEMPrekeys) != MaxKEMPrekeys || !u.KEMPrekeys[MaxKEMPrekeys-1].LastResort {
		t.Fatal("items lost")
	}
	// Every part is optional, as long as something is there.
	for name, part := range map[string]*Upload{
		"signed prekey only":     {SignedPrekey: d.upload.SignedPrekey},
		"sealed-sender key only": {SealedSenderKey: d.upload.SealedSenderKey},
		"key packages only":      {KeyPackages: d.upload.KeyPackages},
		"one-time only":          {OneTimePrekeys: d.upload.OneTimePrekeys[:3]},
	} {
		enc, err := part.Marshal()
		must(t, err)
		u, err := ParseUpload(enc)
		if err != nil || u.Verify(d.id.Public().Signing) != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := (&Upload{}).Marshal(); err != ErrMalformed {
		t.Errorf("empty upload: %v", err)
	}
}

// TestUploadVerify: one item signed by another key fails the whole upload.
func TestUploadVerify(t *testing.T) {
	d, o := newDevice(t, 1, 3, 2), newDevice(t, 2, 3, 2)
	swaps := map[string]func(u *Upload){
		"signed prekey":     func(u *Upload) { u.SignedPrekey = o.upload.SignedPrekey },
		"one-time prekey":   func(u *Upload) { u.OneTimePrekeys[1] = o.upload.OneTimePrekeys[1] },
		"KEM prekey":        func(u *Upload) { u.KEMPrekeys[2] = o.upload.KEMPrekeys[2] },
		"sealed-sender key": func(u *Upload) { u.SealedSenderKey = o.upload.SealedSenderKey },
	}
	for name, swap := range swaps {
		u := *d.upload
		u.OneTimePrekeys = append([]*keys.SignedOneTimePrekey(nil), d.upload.OneTimePrekeys...)
		u.KEMPrekeys = append([]*keys.KEMPrekey(nil), d.upload.KEMPrekeys...)
		swap(&u)
		enc, err := u.Marshal()
		must(t, err)
		p, err := ParseUpload(enc)
		must(t, err)
		if err := p.Verify(d.id.Public().Signing); !errors.Is(err, keys.ErrUnsignedPrekey) {
			t.Errorf("%s of another device: %v", name, err)
		}
	}
	must(t, d.upload.Verify(d.id.Public().Signing))
	if err := d.upload.Verify(o.id.Public().Signing); !errors.Is(err, keys.ErrUnsignedPrekey) {
		t.Errorf("upload under another identity: %v", err)
	}
}

// TestUploadStrict: the parser's refusals.
func TestUploadStrict(t *testing.T) {
	d := newDevice(t, 1, 3, 2)
	enc, err := d.upload.Marshal()
	must(t, err)
	bad := func(name string, b []byte) {
		t.Helper()
		if _, err := ParseUpload(b); err != ErrMalformed {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad("truncated", enc[:len(enc)-1])
	bad("extended", append(bytes.Clone(enc), 0))
	bad("type", append([]byte{0x2e}, enc[1:]...))
	bad("version", append([]byte{0x2d, 2}, enc[2:]...))
	bad("flag 2", append([]byte{0x2d, 1, 2}, enc[3:]...))
	bad("too large", make([]byte, MaxUploadSize+1))
	bad("empty upload", []byte{0x2d, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	// One-time prekey list: the first item's key tag.
	opkAt := 3 + spkItemSize + 2
	k := bytes.Clone(enc)
	k[opkAt+4] = byte(keys.TagSignedPrekey)
	bad("one-time prekey with the signed-prekey tag", k)

	// rawMarshal itself encodes a valid upload exactly as Marshal does.
	if !bytes.Equal(rawMarshal(d.upload), enc) {
		t.Fatal("rawMarshal differs from Marshal")
	}
	orders := map[string]func(u *Upload){
		"unsorted one-time": func(u *Upload) { u.OneTimePrekeys[0], u.OneTimePrekeys[1] = u.OneTimePrekeys[1], u.OneTimePrekeys[0] },
		"repeated one-time": func(u *Upload) { u.OneTimePrekeys[1] = u.OneTimePrekeys[0] },
		"unsorted KEM":      func(u *Upload) { u.KEMPrekeys[0], u.KEMPrekeys[1] = u.KEMPrekeys[1], u.KEMPrekeys[0] },
		"two last-resort": func(u *Upload) {
			u.KEMPrekeys[0] = keys.SignKEMPrekey(u.KEMPrekeys[0].ID, testNow, true, u.KEMPrekeys[0].Key, d.id.Signing)
		},
		"too many one-time": func(u *Upload) { u.OneTimePrekeys = manyOPK(t, d, MaxOneTimePrekeys+1) },
		"empty key package": func(u *Upload) {
			u.KeyPackages = []*KeyPackageItem{{Signature: d.upload.KeyPackages[0].Signature}}
		},
		"unsigned key package": func(u *Upload) {
			u.KeyPackages = []*KeyPackageItem{{KeyPackage: d.upload.KeyPackages[0].KeyPackage}}
		},
		"too many key packages": func(u *Upload) {
			u.KeyPackages = make([]*KeyPackageItem, MaxKeyPackages+1)
			for i := range u.KeyPackages {
				u.KeyPackages[i] = d.upload.KeyPackages[0]
			}
		},
	}
	for name, f := range orders {
		u := *d.upload
		u.OneTimePrekeys = append([]*keys.SignedOneTimePrekey(nil), d.upload.OneTimePrekeys...)
		u.KEMPrekeys = append([]*keys.KEMPrekey(nil), d.upload.KEMPrekeys...)
		f(&u)
		if _, err := u.Marshal(); err != ErrMalformed {
			t.Errorf("marshal %s: %v", name, err)
		}
		// The same upload encoded by hand (bypassing Marshal's check) is
		// refused by the parser.
		if b := rawMarshal(&u); b != nil {
			bad(name, b)
		}
	}
}

func manyOPK(t testing.TB, d *device, n int) []*keys.SignedOneTimePrekey {
	out := make([]*keys.SignedOneTimePrekey, n)
	k := d.upload.OneTimePrekeys[0].Key
	for i := range out {
		out[i] = keys.SignOneTimePrekey(uint32(i+1), k, d.id.Signing)
	}
	return out
}

// rawMarshal encodes u without Marshal's checks, for the parser's tests;
// it returns nil where the encoding itself cannot express u.
func rawMarshal(u *Upload) []byte {
	enc, err := (&Upload{SignedPrekey: u.SignedPrekey, SealedSenderKey: u.SealedSenderKey}).Marshal()
	if err != nil {
		return nil
	}
	// enc: type, version, spk flag + item, 2-byte empty OPK list, 3-byte
	// empty KEM list, ssk flag + record, 3-byte empty key packages.
	head := enc[:3+spkItemSize]
	tail := enc[3+spkItemSize+2+3 : len(enc)-3]
	var b []byte
	b = append(b, head...)
	var opks []byte
	for _, p := range u.OneTimePrekeys {
		opks = append(opks, byte(p.ID>>24), byte(p.ID>>16), byte(p.ID>>8), byte(p.ID))
		opks = append(opks, p.Key.Bytes()...)
		opks = append(opks, p.Signature...)
	}
	b = append(b, byte(len(opks)>>8), byte(len(opks)))
	b = append(b, opks...)
	var kems []byte
	for _, p := range u.KEMPrekeys {
		c := uint64(p.Created.Unix())
		kems = append(kems, byte(p.ID>>24), byte(p.ID>>16), byte(p.ID>>8), byte(p.ID))
		kems = append(kems, byte(c>>56), byte(c>>48), byte(c>>40), byte(c>>32), byte(c>>24), byte(c>>16), byte(c>>8), byte(c))
		kems = append(kems, boolByte(p.LastResort))
		kems = append(kems, p.Key.Bytes()...)
		kems = append(kems, p.Signature...)
	}
	b = append(b, byte(len(kems)>>16), byte(len(kems)>>8), byte(len(kems)))
	b = append(b, kems...)
	b = append(b, tail...)
	var kps []byte
	for _, kp := range u.KeyPackages {
		kps = append(kps, byte(len(kp.KeyPackage)>>8), byte(len(kp.KeyPackage)))
		kps = append(kps, kp.KeyPackage...)
		kps = append(kps, kp.Signature...)
	}
	b = append(b, byte(len(kps)>>16), byte(len(kps)>>8), byte(len(kps)))
	return append(b, kps...)
}

// TestT14BundleSubstitution: a relay that serves another identity, or any
// key it did not get from the device, is caught by the initiator.
func TestT14BundleSubstitution(t *testing.T) {
	b, relay := newDevice(t, 2, 3, 2), newDevice(t, 66, 3, 2)
	id := b.id.Public()
	open := func(r *Response) error {
		_, _, err := Open(marshal(t, r), id, b.mailbox, testNow)
		return err
	}
	if err := open(b.serve(t, 1, 0)); err != nil {
		t.Fatalf("honest bundle: %v", err)
	}
	if err := open(b.serve(t, 0, 2)); err != nil {
		t.Fatalf("honest bundle, no one-time prekey, last-resort KEM: %v", err)
	}
	// The relay's own device's bundle, served for B.
	if err := open(relay.serve(t, 1, 0)); err != ErrIdentityMismatch {
		t.Fatalf("another identity: %v", err)
	}
	// B's identity with the relay's keys (signed by the relay's identity).
	for name, f := range map[string]func(r *Response){
		"signed prekey": func(r *Response) { r.Bundle.SignedPrekey = relay.upload.SignedPrekey },
		"KEM prekey":    func(r *Response) { r.Bundle.KEMPrekey = relay.upload.KEMPrekeys[0] },
		"one-time prekey": func(r *Response) {
			p := relay.upload.OneTimePrekeys[0]
			r.Bundle.OneTimePrekey = &pqxdh.OneTimePrekey{ID: p.ID, Key: p.Key}
			r.OneTimePrekeySignature = p.Signature
		},
		"one-time prekey, B's signature": func(r *Response) {
			r.Bundle.OneTimePrekey = &pqxdh.OneTimePrekey{ID: r.Bundle.OneTimePrekey.ID, Key: relay.upload.OneTimePrekeys[0].Key}
		},
		"sealed-sender key": func(r *Response) { r.SealedSenderKey = relay.upload.SealedSenderKey },
		"last-resort flag": func(r *Response) {
			k := *r.Bundle.KEMPrekey
			k.LastResort = !k.LastResort
			r.Bundle.KEMPrekey = &k
		},
	} {
		r := b.serve(t, 1, 0)
		f(r)
		if err := open(r); !errors.Is(err, keys.ErrUnsignedPrekey) {
			t.Errorf("relay's %s: %v, want ErrUnsignedPrekey", name, err)
		}
	}
	// An expired sealed-sender key.
	if _, _, err := Open(marshal(t, b.serve(t, 1, 0)), id, b.mailbox, b.upload.SealedSenderKey.Expires); err != sealed.ErrKeyExpired {
		t.Errorf("expired sealed-sender key: %v", err)
	}
}

// TestResponseStrict: the response parser's refusals.
func TestResponseStrict(t *testing.T) {
	b := newDevice(t, 2, 1, 1)
	withOPK, noOPK := marshal(t, b.serve(t, 1, 0)), marshal(t, b.serve(t, 0, 0))
	for name, enc := range map[string][]byte{
		"truncated":            withOPK[:len(withOPK)-1],
		"extended":             append(bytes.Clone(withOPK), 0),
		"type":                 append([]byte{0x2d}, withOPK[1:]...),
		"missing signature":    append(bytes.Clone(withOPK[:len(withOPK)-sealed.KeyRecordSize-64]), withOPK[len(withOPK)-sealed.KeyRecordSize:]...),
		"extra signature":      append(append(bytes.Clone(noOPK[:len(noOPK)-sealed.KeyRecordSize]), make([]byte, 64)...), noOPK[len(noOPK)-sealed.KeyRecordSize:]...),
		"empty bundle":         {0x2e, 1, 0, 0},
		"not a pqxdh bundle":   {0x2e, 1, 0, 1, 0x21},
		"no sealed-sender key": withOPK[:len(withOPK)-sealed.KeyRecordSize],
	} {
		if _, err := ParseResponse(enc); err != ErrMalformed {
			t.Errorf("%s: %v", name, err)
		}
	}
	r := b.serve(t, 1, 0)
	r.OneTimePrekeySignature = nil
	if _, err := r.Marshal(); err != ErrMalformed {
		t.Errorf("marshal without the one-time signature: %v", err)
	}
}

// TestPublishToSession: a device uploads, the relay checks the upload and
// serves a bundle, and an initiator opens it, runs PQXDH, seals its first
// message, and the device opens the envelope and decrypts.
func TestPublishToSession(t *testing.T) {
	a, b := newDevice(t, 1, 1, 1), newDevice(t, 2, 2, 1)
	enc, err := b.upload.Marshal()
	must(t, err)
	up, err := ParseUpload(enc) // relay side
	must(t, err)
	must(t, up.Verify(b.id.Public().Signing))
	b.upload = up

	bun, rec, err := Open(marshal(t, b.serve(t, 2, 0)), b.id.Public(), b.mailbox, testNow) // initiator
	must(t, err)
	im, res, err := pqxdh.Initiate(detRand(7), a.id, bun)
	must(t, err)
	pre, err := im.Marshal()
	must(t, err)
	cfg := ratchet.Config{Now: func() time.Time { return testNow }}
	as, err := ratchet.NewInitiator(cfg, ratchet.Params{SharedKey: res.SharedKey, AD: res.AD, Self: a.id.Public(), Peer: b.id.Public()}, bun.SignedPrekey.Key, bun.KEMPrekey.Key, pre)
	must(t, err)
	ct, err := as.Encrypt([]byte("first message"))
	must(t, err)
	env, err := rec.Seal(&sealed.Message{MessageID: sealed.NewMessageID(), TTL: 3600,
		Sender:    sealed.Sender{Tenant: [16]byte{1}, User: [16]byte{9}, Device: [16]byte{1}, Serial: 1, Identity: a.id.Public()},
		Timestamp: testNow, ContentType: sealed.ContentRatchetMessage, Content: ct})
	must(t, err)

	kr := sealed.NewKeyring(b.mailbox) // recipient
	kr.Add(b.upload.SealedSenderKey.ID, b.ssk)
	o, err := kr.Open(env)
	must(t, err)
	p, err := ratchet.PeekPreamble(o.Content)
	must(t, err)
	m, err := pqxdh.ParseInitialMessage(p)
	must(t, err)
	must(t, o.CheckPeer(m.Identity))
	r, err := pqxdh.Respond(b.id, m, pqxdh.ResponderKeys{SignedPrekey: b.spk, OneTimePrekey: b.opks[*m.OneTimePrekeyID], KEMPrekey: b.kems[m.KEMPrekeyID]})
	must(t, err)
	bs, err := ratchet.NewResponder(cfg, ratchet.Params{SharedKey: r.SharedKey, AD: r.AD, Self: b.id.Public(), Peer: m.Identity}, b.spk, b.kems[m.KEMPrekeyID])
	must(t, err)
	got, err := bs.Decrypt(o.Content)
	must(t, err)
	if string(got.Plaintext) != "first message" || *m.OneTimePrekeyID != 11 {
		t.Fatalf("got %q with one-time prekey %d", got.Plaintext, *m.OneTimePrekeyID)
	}
}

func FuzzParseUpload(f *testing.F) {
	d := newDevice(f, 1, 2, 1)
	enc, err := d.upload.Marshal()
	must(f, err)
	f.Add(enc)
	f.Add(enc[:40])
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		u, err := ParseUpload(in)
		if err != nil {
			if err != ErrMalformed {
				t.Fatal(err)
			}
			return
		}
		clear(in)
		re, err := u.Marshal()
		if err != nil || !bytes.Equal(re, b) {
			t.Fatalf("upload does not re-encode: %v", err)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	d := newDevice(f, 2, 1, 1)
	f.Add(marshal(f, d.serve(f, 1, 0)))
	f.Add(marshal(f, d.serve(f, 0, 1)))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		r, err := ParseResponse(in)
		if err != nil {
			if err != ErrMalformed {
				t.Fatal(err)
			}
			return
		}
		clear(in)
		re, err := r.Marshal()
		if err != nil || !bytes.Equal(re, b) {
			t.Fatalf("response does not re-encode: %v", err)
		}
	})
}
