package tlog

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// The cosignature line of the c2sp.org/tlog-cosignature example, whose
// signed message has "time 1679315147".
const c2spCosignatureLine = "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"

func TestParseCosignatureExample(t *testing.T) {
	c, err := ParseCosignature([]byte(c2spCosignatureLine))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "witness.example.com/w1" || c.KeyID != 0x8d66cf3f || c.Timestamp != 1679315147 || len(c.Signature) != 64 {
		t.Fatalf("parsed %+v", c)
	}
	if b, _ := c.Marshal(); string(b) != c2spCosignatureLine {
		t.Fatal("round trip")
	}
	if !c.Time().Equal(time.Unix(1679315147, 0)) {
		t.Fatal("Time")
	}
}

func TestCosignatures(t *testing.T) {
	cp := &Checkpoint{Origin: testOrigin, Size: 5, Root: Hash{1, 2, 3}, Extensions: []string{"ext"}}
	other := &Checkpoint{Origin: testOrigin, Size: 5, Root: Hash{1, 2, 4}}
	for _, typ := range []CosignatureType{CosignatureEd25519, CosignatureMLDSA44} {
		t.Run(typ.String(), func(t *testing.T) {
			k := testWitnessKey(t, "witness.example/w1", typ)
			cs, err := CosignCheckpoint(k, cp, testTime)
			if err != nil {
				t.Fatal(err)
			}
			if cs.Timestamp != uint64(testTime.Unix()) || cs.Name != "witness.example/w1" || cs.KeyID != k.Public().KeyID() {
				t.Fatalf("cosignature %+v", cs)
			}
			if err := VerifyCosignature(k.Public(), cp, cs); err != nil {
				t.Fatal(err)
			}
			line, err := cs.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseCosignature(line)
			if err != nil || back.Timestamp != cs.Timestamp || !bytes.Equal(back.Signature, cs.Signature) {
				t.Fatalf("round trip: %v", err)
			}
			if err := VerifyCosignature(k.Public(), other, cs); !errors.Is(err, ErrBadSignature) {
				t.Error("cosignature verified for another root")
			}
			moved := *cs
			moved.Timestamp++
			if err := VerifyCosignature(k.Public(), cp, &moved); !errors.Is(err, ErrBadSignature) {
				t.Error("cosignature verified with another timestamp")
			}
			k2 := testWitnessKey(t, "witness.example/w2", typ)
			if err := VerifyCosignature(k2.Public(), cp, cs); !errors.Is(err, ErrBadSignature) {
				t.Error("cosignature verified under another key")
			}
			renamed := *cs
			renamed.Name = "witness.example/w2"
			if err := VerifyCosignature(k.Public(), cp, &renamed); !errors.Is(err, ErrBadSignature) {
				t.Error("cosignature verified under another name")
			}
			if _, err := CosignCheckpoint(k, cp, time.Unix(0, 0)); err == nil {
				t.Error("cosigned with timestamp 0")
			}
		})
	}
	// ML-DSA-44 does not sign extension lines; Ed25519 does.
	noExt := *cp
	noExt.Extensions = nil
	ed, pq := testWitnessKey(t, "w.example/ed", CosignatureEd25519), testWitnessKey(t, "w.example/pq", CosignatureMLDSA44)
	csEd, _ := CosignCheckpoint(ed, cp, testTime)
	csPQ, _ := CosignCheckpoint(pq, cp, testTime)
	if VerifyCosignature(ed.Public(), &noExt, csEd) == nil {
		t.Error("Ed25519 cosignature does not cover extension lines")
	}
	if VerifyCosignature(pq.Public(), &noExt, csPQ) != nil {
		t.Error("ML-DSA-44 cosignature depends on extension lines")
	}
}

// TestCosignaturesIndependent checks both cosignature types against
// github.com/transparency-dev/formats/note, an independent implementation
// (its ML-DSA-44 is filippo.io/mldsa, not circl), in both directions.
func TestCosignaturesIndependent(t *testing.T) {
	l := newTestLog(t, testOrigin, "a")
	l.append("a", "b", "c")
	msg := l.sign(3)
	cp := l.checkpoint(3)
	for _, typ := range []CosignatureType{CosignatureEd25519, CosignatureMLDSA44} {
		t.Run(typ.String(), func(t *testing.T) {
			k := testWitnessKey(t, "witness.example/w1", typ)
			// Ours verified by theirs.
			v, err := fnote.NewVerifierForCosignatureV1(k.Public().String())
			if err != nil {
				t.Fatal(err)
			}
			if v.KeyHash() != k.Public().KeyID() {
				t.Fatalf("key ID %08x, formats says %08x", k.Public().KeyID(), v.KeyHash())
			}
			cosigned := cosignNote(t, msg, testTime, k)
			n, err := note.Open(cosigned, note.VerifierList(v))
			if err != nil || len(n.Sigs) != 1 {
				t.Fatalf("formats rejects our cosignature: %v", err)
			}
			if ts, err := fnote.CoSigV1Timestamp(n.Sigs[0]); typ == CosignatureEd25519 && (err != nil || !ts.Equal(testTime)) {
				t.Fatalf("formats reads timestamp %v, %v", ts, err)
			}
			// Theirs verified by ours, from the same seed: the two
			// implementations derive the same public key.
			skey := fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", k.Public().Name(), k.Public().KeyID(),
				base64.StdEncoding.EncodeToString(append([]byte{byte(typ)}, k.Seed()...)))
			s, err := fnote.NewSignerForCosignatureV1(skey)
			if err != nil {
				t.Fatal(err)
			}
			if s.KeyHash() != k.Public().KeyID() {
				t.Fatalf("formats derives another key from the same seed")
			}
			theirs, err := note.Sign(&note.Note{Text: string(mustMarshal(t, cp))}, s)
			if err != nil {
				t.Fatal(err)
			}
			_, sigs, _ := splitNote(theirs)
			cs, err := ParseCosignature(sigs)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyCosignature(k.Public(), cp, cs); err != nil {
				t.Fatalf("we reject formats' cosignature: %v", err)
			}
		})
	}
}

func mustMarshal(t testing.TB, c *Checkpoint) []byte {
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCosignatureRejects(t *testing.T) {
	good, _ := (&Cosignature{Name: "w.example", KeyID: 1, Timestamp: 2, Signature: make([]byte, 64)}).Marshal()
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	for name, line := range map[string]string{
		"no newline":     strings.TrimSuffix(string(good), "\n"),
		"two lines":      string(good) + string(good),
		"hyphen":         "- w.example " + b64(76) + "\n",
		"no name":        "— " + b64(76) + "\n",
		"empty name":     "—  " + b64(76) + "\n",
		"name with plus": "— w+x " + b64(76) + "\n",
		"wrong length":   "— w.example " + b64(75) + "\n",
		"unpadded":       "— w.example " + strings.TrimRight(b64(76), "=") + "\n",
		"trailing space": "— w.example " + b64(76) + " \n",
		"timestamp 2^63": "— w.example " + base64.StdEncoding.EncodeToString(append([]byte{0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 64)...)) + "\n",
		"url base64":     "— w.example " + strings.ReplaceAll(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 76)), "+", "-") + "\n",
	} {
		if _, err := ParseCosignature([]byte(line)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseCosignatures(append(bytes.Clone(good), good...)); err != nil {
		t.Error(err)
	}
	if _, err := ParseCosignatures(nil); err == nil {
		t.Error("empty response body accepted")
	}
}

func TestWitnessKeyEncoding(t *testing.T) {
	for _, typ := range []CosignatureType{CosignatureEd25519, CosignatureMLDSA44} {
		k := testWitnessKey(t, "witness.example/w1", typ).Public()
		back, err := ParseWitnessPublicKey(k.String())
		if err != nil || !back.Equal(k) || back.String() != k.String() {
			t.Fatalf("%v: round trip: %v", typ, err)
		}
		name, rest, _ := strings.Cut(k.String(), "+")
		id, key, _ := strings.Cut(rest, "+")
		for desc, vkey := range map[string]string{
			"uppercase ID":  name + "+" + strings.ToUpper(id) + "+" + key,
			"wrong ID":      name + "+00000000+" + key,
			"other name":    "w2.example+" + id + "+" + key,
			"short ID":      name + "+" + id[1:] + "+" + key,
			"no key":        name + "+" + id,
			"padding added": name + "+" + id + "+" + key + "====",
			"space":         name + "+" + id + "+ " + key,
			"trailing junk": k.String() + "A",
		} {
			if _, err := ParseWitnessPublicKey(vkey); err == nil {
				t.Errorf("%v: %s accepted", typ, desc)
			}
		}
	}
	// A standard Ed25519 (type 0x01) vkey is not a witness key.
	l := testLogKey(t, "a")
	vkey, _ := Ed25519VerifierKey("w.example", l.Public())
	if _, err := ParseWitnessPublicKey(vkey); err == nil {
		t.Error("type 0x01 vkey accepted as a witness key")
	}
	k := testWitnessKey(t, "witness.example/w1", CosignatureEd25519)
	if s := fmt.Sprintf("%v %+v %#v %s", k, k, k, k); strings.Contains(s, base64.StdEncoding.EncodeToString(k.Seed())[:10]) ||
		strings.Contains(s, fmt.Sprintf("%x", k.Seed())[:10]) {
		t.Error("private key prints its seed")
	}
	if _, err := NewWitnessPrivateKey("a b", CosignatureEd25519, make([]byte, 32)); err == nil {
		t.Error("invalid name accepted")
	}
	if _, err := NewWitnessPrivateKey(strings.Repeat("n", 256), CosignatureMLDSA44, make([]byte, 32)); err == nil {
		t.Error("name longer than 255 bytes accepted")
	}
	if _, err := NewWitnessPrivateKey("w", 0x01, make([]byte, 32)); err == nil {
		t.Error("type 0x01 accepted")
	}
}
