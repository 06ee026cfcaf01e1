package prim

import (
	"bytes"
	"errors"
	"testing"
)

var aeads = []struct {
	name string
	new  func([]byte) (AEAD, error)
}{
	{"ChaCha20-Poly1305", NewChaCha20Poly1305},
	{"AES-256-GCM", NewAES256GCM},
}

func TestKeySize(t *testing.T) {
	for _, a := range aeads {
		for _, n := range []int{0, 16, 24, 31, 33, 64} {
			if _, err := a.new(make([]byte, n)); !errors.Is(err, ErrKeySize) {
				t.Errorf("%s: %d-byte key: %v, want ErrKeySize", a.name, n, err)
			}
		}
		if _, err := a.new(make([]byte, KeySize)); err != nil {
			t.Errorf("%s: %d-byte key: %v", a.name, KeySize, err)
		}
	}
}

// TestOpenFailures checks that every kind of Open failure returns exactly
// ErrOpen and a nil slice, and leaves dst[:len(dst)] and the inputs as they
// were.
func TestOpenFailures(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, KeySize)
	nonce := bytes.Repeat([]byte{0x07}, NonceSize)
	ad := []byte("associated data")
	msg := []byte("a message long enough to span more than one block of keystream")
	for _, a := range aeads {
		c, err := a.new(key)
		if err != nil {
			t.Fatal(err)
		}
		sealed := c.Seal(nil, nonce, msg, ad)
		if got, err := c.Open(nil, nonce, sealed, ad); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%s: round trip failed: %v", a.name, err)
		}

		type tc struct {
			name              string
			nonce, sealed, ad []byte
		}
		var cases []tc
		for i := range sealed {
			for _, bit := range []byte{0x01, 0x80} {
				m := bytes.Clone(sealed)
				m[i] ^= bit
				cases = append(cases, tc{"flipped ciphertext/tag bit", nonce, m, ad})
			}
		}
		for n := 0; n < len(sealed); n++ {
			cases = append(cases, tc{"truncated", nonce, sealed[:n], ad})
		}
		cases = append(cases,
			tc{"extended", nonce, append(bytes.Clone(sealed), 0), ad},
			tc{"wrong ad", nonce, sealed, []byte("associated datA")},
			tc{"missing ad", nonce, sealed, nil},
			tc{"nil nonce", nil, sealed, ad},
			tc{"short nonce", nonce[:NonceSize-1], sealed, ad},
			tc{"long nonce", append(bytes.Clone(nonce), 0), sealed, ad},
			tc{"24-byte nonce", bytes.Repeat([]byte{7}, 24), sealed, ad},
		)
		for i := range nonce {
			m := bytes.Clone(nonce)
			m[i] ^= 1
			cases = append(cases, tc{"wrong nonce", m, sealed, ad})
		}
		for _, k := range cases {
			prefix := []byte("untouched prefix")
			dst := make([]byte, len(prefix), len(prefix)+len(k.sealed)+64)
			copy(dst, prefix)
			inNonce, inSealed, inAD := bytes.Clone(k.nonce), bytes.Clone(k.sealed), bytes.Clone(k.ad)
			got, err := c.Open(dst, k.nonce, k.sealed, k.ad)
			if err != ErrOpen || got != nil {
				t.Errorf("%s: %s: Open = %x, %v; want nil, ErrOpen", a.name, k.name, got, err)
			}
			if !bytes.Equal(dst, prefix) {
				t.Errorf("%s: %s: Open modified dst[:len(dst)]", a.name, k.name)
			}
			if !bytes.Equal(k.nonce, inNonce) || !bytes.Equal(k.sealed, inSealed) || !bytes.Equal(k.ad, inAD) {
				t.Errorf("%s: %s: Open modified its inputs", a.name, k.name)
			}
		}
	}
}

// TestOpenAppends checks that a successful Open and Seal append to dst
// without changing its prefix.
func TestOpenAppends(t *testing.T) {
	key := bytes.Repeat([]byte{1}, KeySize)
	nonce := make([]byte, NonceSize)
	for _, a := range aeads {
		c, _ := a.new(key)
		prefix := []byte("prefix")
		sealed := c.Seal(bytes.Clone(prefix), nonce, []byte("hello"), nil)
		if !bytes.HasPrefix(sealed, prefix) || len(sealed) != len(prefix)+5+Overhead {
			t.Fatalf("%s: Seal did not append", a.name)
		}
		got, err := c.Open(bytes.Clone(prefix), nonce, sealed[len(prefix):], nil)
		if err != nil || string(got) != "prefixhello" {
			t.Fatalf("%s: Open = %q, %v", a.name, got, err)
		}
	}
}

// TestSealPanicsOnBadNonce documents that a wrong nonce length in Seal is a
// programming error.
func TestSealPanicsOnBadNonce(t *testing.T) {
	for _, a := range aeads {
		c, _ := a.new(make([]byte, KeySize))
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Seal accepted an 11-byte nonce", a.name)
				}
			}()
			c.Seal(nil, make([]byte, NonceSize-1), nil, nil)
		}()
	}
}

func TestHKDFLength(t *testing.T) {
	for _, n := range []int{1, 32, 255 * 32} {
		out, err := HKDF([]byte("secret"), nil, "info", n)
		if err != nil || len(out) != n {
			t.Errorf("HKDF(%d) = %d bytes, %v", n, len(out), err)
		}
	}
	if _, err := HKDF([]byte("secret"), nil, "info", 255*32+1); err == nil {
		t.Error("HKDF accepted a length over 255·32")
	}
}
