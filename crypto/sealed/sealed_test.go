package sealed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
)

// TestSizes checks the constants against docs/spec/envelope.md §Sizes and
// the bucket table of §Size buckets.
func TestSizes(t *testing.T) {
	if HeaderSize != 58 || EncSize != 1120 || innerFixedSize != 136 || Overhead != 1330 ||
		KeyRecordSize != 1303 || MaxContentSize != 522958 || MaxTTL != 7776000 {
		t.Fatalf("sizes: header %d enc %d inner %d overhead %d record %d max content %d",
			HeaderSize, EncSize, innerFixedSize, Overhead, KeyRecordSize, MaxContentSize)
	}
	table := map[int]int{ // bucket → largest content, from the spec
		2048: 718, 4096: 2766, 8192: 6862, 16384: 15054, 32768: 31438,
		65536: 64206, 131072: 129742, 262144: 260814, 524288: 522958,
	}
	buckets := 0
	for n := 0; n <= MaxBucket+1; n++ {
		if IsBucket(n) {
			buckets++
			if _, ok := table[n]; !ok {
				t.Fatalf("IsBucket(%d), not in the spec's table", n)
			}
		}
	}
	if buckets != len(table) {
		t.Fatalf("%d buckets, the spec lists %d", buckets, len(table))
	}
	for bucket, largest := range table {
		if got, err := BucketFor(largest); err != nil || got != bucket {
			t.Errorf("BucketFor(%d) = %d, %v; want %d", largest, got, err, bucket)
		}
		if bucket < MaxBucket {
			if got, err := BucketFor(largest + 1); err != nil || got != 2*bucket {
				t.Errorf("BucketFor(%d) = %d, %v; want %d", largest+1, got, err, 2*bucket)
			}
		}
	}
	for _, n := range []int{0, -1, MaxContentSize + 1} {
		if _, err := BucketFor(n); err != ErrTooLarge {
			t.Errorf("BucketFor(%d) = %v, want ErrTooLarge", n, err)
		}
	}
	if got, _ := BucketFor(1024); got != 4096 {
		t.Errorf("a 1 KiB content is in the %d bucket; the spec says 4096", got)
	}
}

// TestSealOpenRoundTrip seals contents at every bucket boundary and opens
// them.
func TestSealOpenRoundTrip(t *testing.T) {
	a, b := newDevice(t, 1), newDevice(t, 2)
	r := b.recipient(t)
	sizes := []int{1, 100, 718, 719, 1024, 2766, 2767, 6862, 6863}
	if !testing.Short() {
		sizes = append(sizes, 260814, 260815, MaxContentSize)
	}
	for _, n := range sizes {
		content := bytes.Repeat([]byte{byte(n)}, n)
		m := message(a, content)
		env, err := r.Seal(m)
		must(t, err)
		want, _ := BucketFor(n)
		if len(env) != want {
			t.Fatalf("content %d: envelope %d bytes, want %d", n, len(env), want)
		}
		h, err := ParseHeader(env)
		must(t, err)
		if h.Mailbox != b.mailbox || h.MessageID != m.MessageID || h.TTL != m.TTL || h.KeyID != b.record.ID {
			t.Fatalf("content %d: header %+v", n, h)
		}
		enc, err := h.Marshal()
		must(t, err)
		if !bytes.Equal(enc, env[:HeaderSize]) {
			t.Fatalf("header does not re-encode to itself")
		}
		o, err := b.keyring.Open(env)
		must(t, err)
		sameMessage(t, o, m, *h)
		must(t, o.CheckPeer(a.id.Public()))
	}
}

// TestSealRefuses: Seal refuses bad messages before sealing.
func TestSealRefuses(t *testing.T) {
	a, b := newDevice(t, 1), newDevice(t, 2)
	r := b.recipient(t)
	for name, tc := range map[string]struct {
		mutate func(*Message)
		want   error
	}{
		"empty content":      {func(m *Message) { m.Content = nil }, ErrTooLarge},
		"content too large":  {func(m *Message) { m.Content = make([]byte, MaxContentSize+1) }, ErrTooLarge},
		"zero message id":    {func(m *Message) { m.MessageID = MessageID{} }, ErrMalformed},
		"zero ttl":           {func(m *Message) { m.TTL = 0 }, ErrMalformed},
		"ttl too long":       {func(m *Message) { m.TTL = MaxTTL + 1 }, ErrMalformed},
		"unknown content":    {func(m *Message) { m.ContentType = 2 }, ErrMalformed},
		"no sender identity": {func(m *Message) { m.Sender.Identity = keys.DeviceIdentity{} }, ErrMalformed},
		"zero sender user":   {func(m *Message) { m.Sender.User = [16]byte{} }, ErrMalformed},
		"zero serial":        {func(m *Message) { m.Sender.Serial = 0 }, ErrMalformed},
		"time before 1970":   {func(m *Message) { m.Timestamp = time.Time{} }, ErrMalformed},
	} {
		m := message(a, []byte("hello"))
		tc.mutate(m)
		if _, err := r.Seal(m); err != tc.want {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

// TestNewRecipient: a sender seals only to a key record signed by the
// recipient's verified identity key and not expired.
func TestNewRecipient(t *testing.T) {
	b, c := newDevice(t, 2), newDevice(t, 3)
	if _, err := NewRecipient(b.mailbox, c.id.Public().Signing, b.record, testNow); !errors.Is(err, keys.ErrUnsignedPrekey) {
		t.Errorf("record under another identity: %v", err)
	}
	if _, err := NewRecipient(b.mailbox, b.id.Public().Signing, b.record, b.record.Expires); err != ErrKeyExpired {
		t.Errorf("at expiry: %v", err)
	}
	if _, err := NewRecipient(b.mailbox, b.id.Public().Signing, b.record, b.record.Expires.Add(-time.Second)); err != nil {
		t.Errorf("a second before expiry: %v", err)
	}
	if _, err := NewRecipient(MailboxID{}, b.id.Public().Signing, b.record, testNow); err != ErrMalformed {
		t.Errorf("zero mailbox: %v", err)
	}
	tampered := *b.record
	tampered.ID++
	if _, err := NewRecipient(b.mailbox, b.id.Public().Signing, &tampered, testNow); !errors.Is(err, keys.ErrUnsignedPrekey) {
		t.Errorf("record with another id: %v", err)
	}
}

// TestT14SealedSenderKeySubstitution: a relay that serves its own
// sealed-sender key for a device, signed by an identity key of its own, is
// refused, because the sender checks the record under the identity key it
// verified in the key directory; and an envelope that names a contact with
// a new identity key fails the binding to the existing session.
func TestT14SealedSenderKeySubstitution(t *testing.T) {
	a, b, relay := newDevice(t, 1), newDevice(t, 2), newDevice(t, 66)
	forged := keys.SignSealedSenderKey(b.record.ID, testNow, testNow.Add(time.Hour), relay.ssk.Public(), relay.id.Signing)
	if _, err := NewRecipient(b.mailbox, b.id.Public().Signing, forged, testNow); !errors.Is(err, keys.ErrUnsignedPrekey) {
		t.Fatalf("relay's key accepted: %v", err)
	}
	// A has a session with B's current identity; an envelope naming B with
	// another identity (a key the relay pushed) does not bind to it.
	m := message(relay, []byte("ratchet message"))
	m.Sender.Tenant, m.Sender.User, m.Sender.Device = b.sender.Tenant, b.sender.User, b.sender.Device
	env, err := a.recipient(t).Seal(m)
	must(t, err)
	o, err := a.keyring.Open(env)
	must(t, err)
	if err := o.CheckPeer(b.id.Public()); err != ErrSenderMismatch {
		t.Fatalf("new identity bound to the old session: %v", err)
	}
}

// TestOpenErrors: every way an envelope can fail to open, each with its
// error, the input unmodified and the keyring unchanged.
func TestOpenErrors(t *testing.T) {
	a, b, c := newDevice(t, 1), newDevice(t, 2), newDevice(t, 3)
	env, err := b.recipient(t).Seal(message(a, []byte("hello")))
	must(t, err)
	ids := b.keyring.IDs()

	open := func(name string, k *Keyring, e []byte, want error) {
		t.Helper()
		in := bytes.Clone(e)
		o, err := k.Open(in)
		if err != want || o != nil {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
		if !bytes.Equal(in, e) {
			t.Errorf("%s: Open modified its input", name)
		}
		if got := k.IDs(); !slices.Equal(got, ids) && k == b.keyring {
			t.Errorf("%s: keyring changed", name)
		}
	}
	flip := func(i int) []byte {
		e := bytes.Clone(env)
		e[i] ^= 1
		return e
	}
	open("another device's keyring", c.keyring, env, ErrWrongMailbox)
	open("truncated", b.keyring, env[:len(env)-1], ErrMalformed)
	open("extended", b.keyring, append(bytes.Clone(env), 0), ErrMalformed)
	open("empty", b.keyring, nil, ErrMalformed)
	open("type byte", b.keyring, flip(0), ErrMalformed)
	open("version byte", b.keyring, flip(1), ErrMalformed)
	open("mailbox", b.keyring, flip(2), ErrWrongMailbox)
	open("message id", b.keyring, flip(2+32), ErrDecrypt)
	open("ttl", b.keyring, flip(2+32+16+3), ErrDecrypt)
	open("key id", b.keyring, flip(HeaderSize-1), ErrUnknownKey)
	open("enc, ML-KEM half", b.keyring, flip(HeaderSize+10), ErrDecrypt)
	open("enc, X25519 half", b.keyring, flip(HeaderSize+EncSize-5), ErrDecrypt)
	open("ciphertext", b.keyring, flip(HeaderSize+EncSize+5), ErrDecrypt)
	open("tag", b.keyring, flip(len(env)-1), ErrDecrypt)

	zeroTTL := bytes.Clone(env)
	binary.BigEndian.PutUint32(zeroTTL[2+32+16:], 0)
	open("zero ttl", b.keyring, zeroTTL, ErrMalformed)
	zeroID := bytes.Clone(env)
	clear(zeroID[2+32 : 2+32+16])
	open("zero message id", b.keyring, zeroID, ErrMalformed)

	// B holds a different key under the same id: the envelope does not open.
	other := NewKeyring(b.mailbox)
	other.Add(b.record.ID, c.ssk)
	open("another key under the same id", other, env, ErrDecrypt)
	// After rotation B no longer holds the key.
	gone := NewKeyring(b.mailbox)
	open("removed key", gone, env, ErrUnknownKey)
}

// TestRelayMovesEnvelope: an envelope re-addressed by the relay to another
// mailbox of the same recipient user does not open there.
func TestRelayMovesEnvelope(t *testing.T) {
	a, b := newDevice(t, 1), newDevice(t, 2)
	b2 := newDevice(t, 2) // same identity seed, so the same key and key id
	b2.mailbox = NewMailboxID(b.sender.Tenant, [16]byte{9, 9})
	b2.keyring = NewKeyring(b2.mailbox)
	b2.keyring.Add(b.record.ID, b2.ssk)
	env, err := b.recipient(t).Seal(message(a, []byte("for b only")))
	must(t, err)
	moved := bytes.Clone(env)
	copy(moved[2:34], b2.mailbox[:])
	if _, err := b2.keyring.Open(moved); err != ErrDecrypt {
		t.Fatalf("re-addressed envelope: %v, want ErrDecrypt", err)
	}
	if _, err := b2.keyring.Open(env); err != ErrWrongMailbox {
		t.Fatalf("misdelivered envelope: %v, want ErrWrongMailbox", err)
	}
}

// TestInnerStrict: a malicious sender can seal any plaintext; every
// malformed inner content is ErrMalformed after decryption.
func TestInnerStrict(t *testing.T) {
	a, b := newDevice(t, 1), newDevice(t, 2)
	bucket := MinBucket
	size := bucket - HeaderSize - EncSize - tagSize
	good := appendInner(nil, &inner{contentType: ContentRatchetMessage, sender: a.sender, timestampMS: 5, content: []byte("x")}, size)
	if _, err := parseInner(good); err != nil {
		t.Fatal(err)
	}
	h := &Header{Mailbox: b.mailbox, MessageID: NewMessageID(), TTL: 60, KeyID: b.record.ID}
	if o, err := b.keyring.Open(sealRaw(t, b.ssk.Public(), h, good)); err != nil || string(o.Content) != "x" {
		t.Fatalf("hand-sealed good inner: %v", err)
	}
	mut := func(f func([]byte) []byte) []byte { return f(bytes.Clone(good)) }
	setLen := func(n int) func([]byte) []byte {
		return func(b []byte) []byte {
			off := innerFixedSize - 3
			b[off], b[off+1], b[off+2] = byte(n>>16), byte(n>>8), byte(n)
			return b
		}
	}
	cases := map[string][]byte{
		"type":                mut(func(b []byte) []byte { b[0] = 0x25; return b }),
		"version":             mut(func(b []byte) []byte { b[1] = 2; return b }),
		"content type 0":      mut(func(b []byte) []byte { b[2] = 0; return b }),
		"content type 2":      mut(func(b []byte) []byte { b[2] = 2; return b }),
		"zero tenant":         mut(func(b []byte) []byte { clear(b[3:19]); return b }),
		"zero user":           mut(func(b []byte) []byte { clear(b[19:35]); return b }),
		"zero device":         mut(func(b []byte) []byte { clear(b[35:51]); return b }),
		"zero serial":         mut(func(b []byte) []byte { clear(b[51:59]); return b }),
		"signing key tag":     mut(func(b []byte) []byte { b[59] = byte(keys.TagIdentityDH); return b }),
		"dh key tag":          mut(func(b []byte) []byte { b[92] = byte(keys.TagIdentitySigning); return b }),
		"low-order dh key":    mut(func(b []byte) []byte { clear(b[93:125]); return b }),
		"timestamp 2^63":      mut(func(b []byte) []byte { b[125] = 0x80; return b }),
		"empty content":       mut(setLen(0)),
		"content overruns":    mut(setLen(size - innerFixedSize + 1)),
		"non-zero padding":    mut(func(b []byte) []byte { b[len(b)-1] = 1; return b }),
		"padding right after": mut(func(b []byte) []byte { b[innerFixedSize+1] = 1; return b }),
	}
	for name, pt := range cases {
		if _, err := parseInner(pt); err != ErrMalformed {
			t.Errorf("%s: parseInner = %v", name, err)
		}
		if _, err := b.keyring.Open(sealRaw(t, b.ssk.Public(), h, pt)); err != ErrMalformed {
			t.Errorf("%s: Open = %v", name, err)
		}
	}
	// A plaintext of the wrong size makes an envelope of no bucket size.
	if _, err := b.keyring.Open(sealRaw(t, b.ssk.Public(), h, good[:len(good)-1])); err != ErrMalformed {
		t.Errorf("short plaintext: %v", err)
	}
}

// TestKeyRecord: records round-trip and are parsed strictly.
func TestKeyRecord(t *testing.T) {
	b := newDevice(t, 2)
	enc, err := MarshalKeyRecord(b.record)
	must(t, err)
	if len(enc) != KeyRecordSize {
		t.Fatalf("record is %d bytes", len(enc))
	}
	k, err := ParseKeyRecord(enc)
	must(t, err)
	if k.ID != b.record.ID || !k.Created.Equal(b.record.Created) || !k.Expires.Equal(b.record.Expires) ||
		!k.Key.Equal(b.record.Key) || !bytes.Equal(k.Signature, b.record.Signature) {
		t.Fatal("record changed in a round trip")
	}
	must(t, k.Verify(b.id.Public().Signing))
	mut := func(f func([]byte)) []byte { e := bytes.Clone(enc); f(e); return e }
	for name, bad := range map[string][]byte{
		"type":              mut(func(e []byte) { e[0] = 0x25 }),
		"version":           mut(func(e []byte) { e[1] = 0 }),
		"created = expires": mut(func(e []byte) { copy(e[6:14], e[14:22]) }),
		"created 2^63":      mut(func(e []byte) { e[6] = 0x80 }),
		"expires 2^63":      mut(func(e []byte) { e[14] = 0x80 }),
		"truncated":         enc[:len(enc)-1],
		"extended":          append(bytes.Clone(enc), 0),
	} {
		if _, err := ParseKeyRecord(bad); err != ErrMalformed {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	badKey := mut(func(e []byte) { e[22] = byte(keys.TagKEMPrekey) })
	var ke *KeyError
	if _, err := ParseKeyRecord(badKey); !errors.As(err, &ke) || !errors.Is(err, keys.ErrWrongType) {
		t.Errorf("key with another tag: %v", err)
	}
	// Parsing does not alias its input.
	in := bytes.Clone(enc)
	k, err = ParseKeyRecord(in)
	must(t, err)
	clear(in)
	must(t, k.Verify(b.id.Public().Signing))

	for name, rec := range map[string]*keys.SealedSenderKey{
		"nil":              nil,
		"no key":           {ID: 1, Created: b.record.Created, Expires: b.record.Expires, Signature: b.record.Signature},
		"short signature":  {ID: 1, Created: b.record.Created, Expires: b.record.Expires, Key: b.record.Key, Signature: b.record.Signature[:10]},
		"expires first":    {ID: 1, Created: b.record.Expires, Expires: b.record.Created, Key: b.record.Key, Signature: b.record.Signature},
		"fractional times": {ID: 1, Created: b.record.Created.Add(time.Millisecond), Expires: b.record.Expires, Key: b.record.Key, Signature: b.record.Signature},
	} {
		if _, err := MarshalKeyRecord(rec); err != ErrMalformed {
			t.Errorf("marshal %s: %v", name, err)
		}
	}
}

// TestT34EnvelopeBuckets: every envelope the relay can accept has one of
// the bucket sizes, and ParseHeader refuses every other size before it
// reads anything, so the relay never stores an unpadded envelope.
func TestT34EnvelopeBuckets(t *testing.T) {
	a, b := newDevice(t, 1), newDevice(t, 2)
	r := b.recipient(t)
	seen := map[int]bool{}
	for n := 1; n <= 7000; n += 97 {
		env, err := r.Seal(message(a, make([]byte, n)))
		must(t, err)
		if !IsBucket(len(env)) {
			t.Fatalf("content %d: envelope of %d bytes", n, len(env))
		}
		seen[len(env)] = true
		if _, err := ParseHeader(env); err != nil {
			t.Fatal(err)
		}
		for _, d := range []int{-1, 1} {
			e := env
			if d < 0 {
				e = env[:len(env)-1]
			} else {
				e = append(bytes.Clone(env), 0)
			}
			if _, err := ParseHeader(e); err != ErrMalformed {
				t.Fatalf("envelope of %d bytes accepted", len(e))
			}
		}
	}
	if len(seen) != 4 { // 2, 4, 8 and 16 KiB
		t.Fatalf("contents up to 7000 bytes used %d buckets, want 4", len(seen))
	}
}
