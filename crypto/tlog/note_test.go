package tlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"golang.org/x/mod/sumdb/note"
)

func TestSignOpenCheckpoint(t *testing.T) {
	l := newTestLog(t, testOrigin, "a")
	l.append("a", "b", "c")
	msg := l.sign(3)
	c, err := OpenCheckpoint(msg, testOrigin, l.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, l.checkpoint(3)) {
		t.Fatalf("opened %+v", c)
	}
	text, sigs, _ := splitNote(msg)
	if lines := bytes.Count(sigs, []byte("\n")); lines != 2 {
		t.Fatalf("%d signature lines, want 2", lines)
	}
	if want, _ := l.checkpoint(3).Marshal(); !bytes.Equal(text, want) {
		t.Fatal("note text is not the checkpoint")
	}
}

// TestStandardVerifier checks that an unmodified x/mod note verifier, given
// only the standard Ed25519 vkey, accepts a Moat checkpoint and ignores the
// ML-DSA-65 line.
func TestStandardVerifier(t *testing.T) {
	l := newTestLog(t, testOrigin, "a")
	l.append("a")
	msg := l.sign(1)
	vkey, err := Ed25519VerifierKey(testOrigin, l.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := note.NewEd25519VerifierKey(testOrigin, l.key.Public().Ed25519()); vkey != want {
		t.Fatalf("vkey %q, x/mod says %q", vkey, want)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		t.Fatalf("x/mod note.Open: %v", err)
	}
	if len(n.Sigs) != 1 || n.Sigs[0].Hash != v.KeyHash() || len(n.UnverifiedSigs) != 1 ||
		n.UnverifiedSigs[0].Name != testOrigin || n.UnverifiedSigs[0].Hash != logMLDSA65ID(testOrigin, l.key.Public()) {
		t.Fatalf("x/mod saw %+v", n)
	}
	// And the x/mod verifier alone still rejects a tampered classical line.
	bad := bytes.Replace(msg, []byte("\n1\n"), []byte("\n2\n"), 1)
	if _, err := note.Open(bad, note.VerifierList(v)); err == nil {
		t.Fatal("x/mod accepted a modified note")
	}
}

// TestMLDSA65Line recomputes the ML-DSA-65 line's key ID from
// docs/spec/tlog.md by hand and verifies its signature with circl directly.
func TestMLDSA65Line(t *testing.T) {
	l := newTestLog(t, testOrigin, "a")
	msg := l.sign(0)
	text, sigs, _ := splitNote(msg)
	lines := strings.Split(strings.TrimSuffix(string(sigs), "\n"), "\n")
	prefix := "— " + testOrigin + " "
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(lines[1], prefix))
	if err != nil || !strings.HasPrefix(lines[1], prefix) {
		t.Fatal(lines[1])
	}
	h := sha256.New()
	h.Write([]byte(testOrigin + "\n"))
	h.Write([]byte{0xff})
	h.Write([]byte("moat/v1/tlog/ml-dsa-65-note-signature\n"))
	h.Write(l.key.Public().MLDSA65().Bytes())
	if got, want := binary.BigEndian.Uint32(raw), binary.BigEndian.Uint32(h.Sum(nil)); got != want {
		t.Fatalf("key ID %08x, want %08x", got, want)
	}
	if len(raw) != 4+mldsa65.SignatureSize || !l.key.Public().MLDSA65().Verify(text, nil, raw[4:]) {
		t.Fatal("ML-DSA-65 signature over the note text does not verify")
	}
}

func TestHybridPolicy(t *testing.T) {
	l := newTestLog(t, testOrigin, "a")
	l.append("a", "b")
	msg := l.sign(2)
	pub := l.key.Public()
	edLine := func(line []byte) bool { return lineKeyID(line) == logEd25519ID(testOrigin, pub) }
	flip := func(msg []byte, which func([]byte) bool) []byte {
		text, sigs, _ := splitNote(msg)
		out := append(bytes.Clone(text), '\n')
		for _, line := range bytes.SplitAfter(sigs, []byte("\n")) {
			if len(line) > 0 && which(line) {
				raw, _ := base64.StdEncoding.DecodeString(string(line[len("— "+testOrigin+" ") : len(line)-1]))
				raw[len(raw)-1] ^= 1
				line = []byte("— " + testOrigin + " " + base64.StdEncoding.EncodeToString(raw) + "\n")
			}
			out = append(out, line...)
		}
		return out
	}
	notEd := func(l []byte) bool { return !edLine(l) }
	other := newTestLog(t, testOrigin, "other")
	other.append("a", "b")
	w := testWitnessKey(t, "witness.example/w1", CosignatureEd25519)
	for name, tc := range map[string]struct {
		msg  []byte
		want error
	}{
		"only Ed25519":        {dropLines(msg, edLine), ErrBadSignature},
		"only ML-DSA-65":      {dropLines(msg, notEd), ErrBadSignature},
		"no lines":            {dropLines(msg, func([]byte) bool { return false }), ErrMalformed},
		"bad Ed25519":         {flip(msg, edLine), ErrBadSignature},
		"bad ML-DSA-65":       {flip(msg, notEd), ErrBadSignature},
		"other log key":       {other.sign(2), ErrBadSignature},
		"modified text":       {bytes.Replace(msg, []byte("\n2\n"), []byte("\n3\n"), 1), ErrBadSignature},
		"other origin":        {newTestLog(t, "moat.example/directory/other", "a").sign(0), ErrUnknownOrigin},
		"CRLF":                {bytes.ReplaceAll(msg, []byte("\n"), []byte("\r\n")), ErrMalformed},
		"no blank line":       {bytes.Replace(msg, []byte("\n\n"), []byte("\n"), 1), ErrMalformed},
		"too large":           {append(bytes.Repeat([]byte("x"), MaxNoteSize), msg...), ErrMalformed},
		"garbage line":        {append(bytes.Clone(msg), "junk\n"...), ErrMalformed},
		"unknown lines first": {nil, nil},
	} {
		m := tc.msg
		if m == nil {
			m = cosignNote(t, msg, testTime, w)
			text, sigs, _ := splitNote(m)
			ls := bytes.SplitAfter(sigs, []byte("\n"))
			m = append(append(append(append(bytes.Clone(text), '\n'), ls[2]...), ls[1]...), ls[0]...)
		}
		_, err := OpenCheckpoint(m, testOrigin, pub)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: OpenCheckpoint error %v, want %v", name, err, tc.want)
		}
	}
	// An empty tree must have the empty root, and the log refuses to sign
	// one that does not.
	if _, err := SignCheckpoint(&Checkpoint{Origin: testOrigin, Root: Hash{1}}, l.key); !errors.Is(err, ErrMalformed) {
		t.Error("signed an empty tree with a non-empty root")
	}
}

// lineKeyID returns the key ID of a signature line.
func lineKeyID(line []byte) uint32 {
	_, b64, _ := strings.Cut(strings.TrimSuffix(string(line), "\n"), " "+testOrigin+" ")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(raw)
}
