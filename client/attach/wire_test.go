package attach_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/client/attach"
	"github.com/moat-im/moat/server/store/blob"
)

func exampleReference() *attach.Reference {
	r := &attach.Reference{PlaintextSize: 1, CiphertextSize: 4152, Expires: time.UnixMilli(1_700_000_000_000)}
	for i := range r.ID {
		r.ID[i], r.Key[i], r.Digest[i] = 0x11, 0x22, 0x33
	}
	return r
}

// TestReferenceEncoding checks the layout of docs/spec/attachments.md
// §Reference against a hand-assembled encoding.
func TestReferenceEncoding(t *testing.T) {
	want := "02" + repeat("11", 32) + repeat("22", 32) + "0000000000000001" + "0000000000001038" +
		repeat("33", 32) + "0000018bcfe56800"
	got := must(exampleReference().Marshal())
	if hex.EncodeToString(got) != want || len(got) != attach.ReferenceSize {
		t.Fatalf("encoding\n%x\nwant\n%s", got, want)
	}
	r := must(attach.ParseReference(got))
	x := exampleReference()
	if r.ID != x.ID || r.Key != x.Key || r.PlaintextSize != 1 || r.CiphertextSize != 4152 || r.Digest != x.Digest || !r.Expires.Equal(x.Expires) {
		t.Fatalf("parsed %+v", r)
	}
	if !bytes.Equal(must(r.Marshal()), got) {
		t.Fatal("re-encoding differs")
	}
}

func repeat(s string, n int) string { return string(bytes.Repeat([]byte(s), n)) }

func TestReferenceMalformed(t *testing.T) {
	good := must(exampleReference().Marshal())
	set := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return b }
	u64 := func(at int, v uint64) []byte { return set(func(b []byte) { binary.BigEndian.PutUint64(b[at:], v) }) }
	const pAt, cAt, eAt = 65, 73, 113
	for name, b := range map[string][]byte{
		"empty":             nil,
		"short":             good[:len(good)-1],
		"long":              append(bytes.Clone(good), 0),
		"version 0":         set(func(b []byte) { b[0] = 0 }),
		"version 1":         set(func(b []byte) { b[0] = 1 }),
		"version 3":         set(func(b []byte) { b[0] = 3 }),
		"unpadded size":     u64(cAt, 57),
		"zero id":           set(func(b []byte) { clear(b[1:33]) }),
		"zero key":          set(func(b []byte) { clear(b[33:65]) }),
		"plaintext too big": u64(pAt, attach.MaxPlaintextSize+1),
		"plaintext 2^64-1":  u64(pAt, ^uint64(0)),
		"ciphertext +1":     u64(cAt, 4153),
		"ciphertext -1":     u64(cAt, 4151),
		"ciphertext 2^63":   u64(cAt, 1<<63),
		"expiry 0":          u64(eAt, 0),
		"expiry 2^63":       u64(eAt, 1<<63),
		"expiry 2^64-1":     u64(eAt, ^uint64(0)),
	} {
		if _, err := attach.ParseReference(b); !errors.Is(err, attach.ErrMalformedReference) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Marshal refuses what Parse refuses.
	for name, f := range map[string]func(*attach.Reference){
		"sizes":     func(r *attach.Reference) { r.CiphertextSize++ },
		"negative":  func(r *attach.Reference) { r.PlaintextSize = -1 },
		"zero id":   func(r *attach.Reference) { r.ID = blob.ID{} },
		"no expiry": func(r *attach.Reference) { r.Expires = time.Time{} },
		"zero key":  func(r *attach.Reference) { r.Key = attach.Key{} },
	} {
		r := exampleReference()
		f(r)
		if _, err := r.Marshal(); !errors.Is(err, attach.ErrMalformedReference) {
			t.Errorf("Marshal %s: %v", name, err)
		}
	}
}

// FuzzParseReference: a parse either fails with ErrMalformedReference or
// re-encodes to the same bytes.
func FuzzParseReference(f *testing.F) {
	f.Add(must(exampleReference().Marshal()))
	r := exampleReference()
	r.PlaintextSize, r.CiphertextSize = 256<<20, attach.CiphertextSize(attach.PaddedSize(256<<20))
	f.Add(must(r.Marshal()))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := attach.ParseReference(b)
		if err != nil {
			if !errors.Is(err, attach.ErrMalformedReference) {
				t.Fatal(err)
			}
			return
		}
		if out := must(r.Marshal()); !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, out)
		}
	})
}
