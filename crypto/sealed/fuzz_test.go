package sealed

import (
	"bytes"
	"errors"
	"testing"

	"github.com/moat-im/moat/crypto/keys"
)

// Fuzz targets for every decoder: parse(x) ok ⇒ marshal(parse(x)) == x,
// and no input panics.

func envelopeSeeds(t testing.TB) [][]byte {
	a, b := newDevice(t, 1), newDevice(t, 2)
	var out [][]byte
	for _, n := range []int{1, 718, 719} {
		env, err := b.recipient(t).Seal(message(a, make([]byte, n)))
		must(t, err)
		out = append(out, env, env[:len(env)-1], env[:HeaderSize])
	}
	return append(out, nil, make([]byte, MinBucket), bytes.Repeat([]byte{0xff}, MinBucket))
}

func FuzzParseHeader(f *testing.F) {
	for _, s := range envelopeSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, env []byte) {
		in := bytes.Clone(env)
		h, err := ParseHeader(in)
		if !bytes.Equal(in, env) {
			t.Fatal("ParseHeader modified its input")
		}
		if err != nil {
			if err != ErrMalformed || h != nil {
				t.Fatalf("error %v with header %v", err, h)
			}
			return
		}
		enc, err := h.Marshal()
		if err != nil || !bytes.Equal(enc, env[:HeaderSize]) {
			t.Fatalf("header does not re-encode: %v", err)
		}
	})
}

func FuzzOpen(f *testing.F) {
	for _, s := range envelopeSeeds(f) {
		f.Add(s)
	}
	b := newDevice(f, 2)
	f.Fuzz(func(t *testing.T, env []byte) {
		o, err := b.keyring.Open(env)
		if err == nil {
			// Only a real envelope opens; re-sealing its message to B
			// yields an envelope of the same size that opens to the same.
			env2, err := b.recipient(t).Seal(&o.Message)
			if err != nil || len(env2) != len(env) {
				t.Fatalf("opened message does not re-seal: %v", err)
			}
			return
		}
		switch err {
		case ErrMalformed, ErrWrongMailbox, ErrUnknownKey, ErrDecrypt:
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func FuzzParseInner(f *testing.F) {
	a := newDevice(f, 1)
	size := MinBucket - HeaderSize - EncSize - tagSize
	good := appendInner(nil, &inner{contentType: ContentRatchetMessage, sender: a.sender, timestampMS: 99, content: []byte("content")}, size)
	f.Add(good)
	f.Add(good[:innerFixedSize+7])
	f.Add(append(bytes.Clone(good), 1))
	f.Fuzz(func(t *testing.T, pt []byte) {
		in := bytes.Clone(pt)
		got, err := parseInner(in)
		if err != nil {
			if err != ErrMalformed {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		clear(in) // the result must not alias its input
		if re := appendInner(nil, got, len(pt)); !bytes.Equal(re, pt) {
			t.Fatalf("inner content does not re-encode")
		}
	})
}

func FuzzParseKeyRecord(f *testing.F) {
	b := newDevice(f, 2)
	rec, err := MarshalKeyRecord(b.record)
	must(f, err)
	f.Add(rec)
	f.Add(rec[:len(rec)-1])
	f.Add(make([]byte, KeyRecordSize))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		k, err := ParseKeyRecord(in)
		if err != nil {
			var ke *KeyError
			if err != ErrMalformed && !(errors.As(err, &ke) && isKeysError(ke.Err)) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		clear(in)
		re, err := MarshalKeyRecord(k)
		if err != nil || !bytes.Equal(re, data) {
			t.Fatalf("record does not re-encode: %v", err)
		}
	})
}

func isKeysError(err error) bool {
	for _, e := range []error{keys.ErrWrongType, keys.ErrMalformed, keys.ErrNonCanonical, keys.ErrLowOrder, keys.ErrInvalidKEMKey} {
		if err == e {
			return true
		}
	}
	return false
}
