package keys

import (
	"errors"
	"testing"
	"time"
)

// TestSignedOneTimePrekey: the identity signature of a one-time prekey
// covers its id and key, under its own label.
func TestSignedOneTimePrekey(t *testing.T) {
	s, o := newSampleKeys(t, 13), newSampleKeys(t, 14)
	p := SignOneTimePrekey(5, s.opk.Public(), s.idSig)
	if err := p.Verify(s.idSig.Public()); err != nil {
		t.Fatalf("honest signature: %v", err)
	}
	// The same scalar as a signed prekey, signed as one: that signature
	// is not a one-time prekey signature (the labels differ).
	spkSame, err := NewSignedPrekeyPrivateKey(s.opk.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	spk := SignSignedPrekey(5, time.Unix(0, 0), spkSame.Public(), s.idSig)
	for name, bad := range map[string]*SignedOneTimePrekey{
		"other id":                {ID: 6, Key: p.Key, Signature: p.Signature},
		"other key":               {ID: 5, Key: o.opk.Public(), Signature: p.Signature},
		"signed-prekey signature": {ID: 5, Key: p.Key, Signature: spk.Signature},
		"short signature":         {ID: 5, Key: p.Key, Signature: p.Signature[:63]},
		"no key":                  {ID: 5, Signature: p.Signature},
		"nil":                     nil,
	} {
		if err := bad.Verify(s.idSig.Public()); !errors.Is(err, ErrUnsignedPrekey) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := p.Verify(o.idSig.Public()); !errors.Is(err, ErrUnsignedPrekey) {
		t.Errorf("another identity: %v", err)
	}
}
