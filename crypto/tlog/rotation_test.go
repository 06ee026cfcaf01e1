package tlog

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/moat-im/moat/crypto/keys"
)

// announce signs the checkpoint of size with k, announcing next.
func (l *testLog) announce(size uint64, k *keys.LogPrivateKey, next *keys.LogPublicKey) []byte {
	c := l.checkpoint(size)
	c.Extensions = []string{NextLogKeyLine(next)}
	return signNote(l.t, c, k)
}

func (l *testLog) signWith(size uint64, k *keys.LogPrivateKey) []byte {
	return signNote(l.t, l.checkpoint(size), k)
}

// TestWitnessFollowsLogKeyRotation: a witness follows a log key rotation
// only through a checkpoint signed by the key in force that announces
// the next key (docs/spec/tlog.md §Log key rotation): before it, the new
// key is refused; after it, the old key signs no larger tree; the key in
// force is kept in the record, across restarts of the witness.
func TestWitnessFollowsLogKeyRotation(t *testing.T) {
	ctx := context.Background()
	l := newTestLog(t, testOrigin, "rot1")
	k1, k2, k3 := l.key, testLogKey(t, "rot2"), testLogKey(t, "rot3")
	st := NewMemoryWitnessStore()
	newW := func() *Witness {
		w, err := NewWitness(WitnessConfig{Keys: []*WitnessPrivateKey{testWitnessKey(t, "w.example/1", CosignatureEd25519)},
			Logs: map[string]*keys.LogPublicKey{testOrigin: k1.Public()}, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	w := newW()
	add := func(old uint64, note []byte) error {
		t.Helper()
		c, err := checkpointOfNote(note)
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.AddCheckpoint(ctx, &AddCheckpointRequest{OldSize: old, Proof: l.proof(old, c.Size), Checkpoint: note}, testTime)
		return err
	}
	mustAdd := func(old uint64, note []byte) {
		t.Helper()
		if err := add(old, note); err != nil {
			t.Fatal(err)
		}
	}
	wantErr := func(old uint64, note []byte, want error) {
		t.Helper()
		before, _ := st.Load(ctx, testOrigin)
		if err := add(old, note); !errors.Is(err, want) {
			t.Fatalf("got %v, want %v", err, want)
		}
		if after, _ := st.Load(ctx, testOrigin); !bytes.Equal(before, after) {
			t.Fatal("a refused checkpoint changed the record")
		}
	}
	keyIs := func(k *keys.LogPrivateKey) {
		t.Helper()
		got, err := w.LogKey(ctx, testOrigin)
		if err != nil || !got.Equal(k.Public()) {
			t.Fatalf("key in force: %v", err)
		}
	}
	for i := range 6 {
		l.append(string(rune('a' + i)))
	}
	mustAdd(0, l.sign(2))
	// The operator alone cannot re-key: a checkpoint under an unannounced
	// key is refused.
	wantErr(2, l.signWith(3, k2), ErrBadSignature)
	// An announcement of the key in force, or a malformed one.
	wantErr(2, l.announce(3, k1, k1.Public()), ErrMalformed)
	bad := l.checkpoint(3)
	bad.Extensions = []string{labelNextLogKey + " moat-log1:AAAA"}
	wantErr(2, signNote(t, bad, k1), ErrMalformed)

	// Size 3 announces k2.
	ann := l.announce(3, k1, k2.Public())
	mustAdd(2, ann)
	keyIs(k1)
	mustAdd(3, ann) // cosigned again: same note
	// The same tree without the announcement, or announcing another key.
	wantErr(3, l.sign(3), ErrInconsistent)
	wantErr(3, l.announce(3, k1, k3.Public()), ErrInconsistent)
	// The old key signs no larger tree; the new one no tree up to size 3.
	wantErr(3, l.sign(4), ErrBadSignature)
	wantErr(3, l.signWith(3, k2), ErrBadSignature)

	// A restarted witness (same store) still knows the announcement.
	w = newW()
	mustAdd(3, l.signWith(4, k2))
	keyIs(k2)
	wantErr(4, l.sign(5), ErrBadSignature)
	w = newW()
	keyIs(k2)
	mustAdd(4, l.signWith(5, k2))

	// A second rotation, k2 to k3.
	mustAdd(5, l.announce(6, k2, k3.Public()))
	wantErr(6, l.signWith(6, k3), ErrBadSignature)
	l.append("g")
	wantErr(6, l.signWith(7, k2), ErrBadSignature)
	wantErr(6, l.signWith(7, k1), ErrBadSignature)
	mustAdd(6, l.signWith(7, k3))
	keyIs(k3)
	cp, err := w.Checkpoint(ctx, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCheckpoint(cp, testOrigin, k3.Public()); err != nil {
		t.Fatalf("monitoring checkpoint: %v", err)
	}
}

func TestNextLogKey(t *testing.T) {
	k := testLogKey(t, "next")
	c := &Checkpoint{Origin: testOrigin, Size: 1, Root: EmptyRoot, Extensions: []string{"other", NextLogKeyLine(k.Public())}}
	text, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := ParseCheckpoint(text)
	if err != nil {
		t.Fatal(err)
	}
	got, err := NextLogKey(pc)
	if err != nil || !got.Equal(k.Public()) {
		t.Fatalf("NextLogKey = %v", err)
	}
	if got, err := NextLogKey(&Checkpoint{Origin: testOrigin}); got != nil || err != nil {
		t.Fatal("announcement in a plain checkpoint")
	}
	for name, ext := range map[string][]string{
		"twice":     {NextLogKeyLine(k.Public()), NextLogKeyLine(k.Public())},
		"no space":  {labelNextLogKey + k.Public().String()},
		"two space": {labelNextLogKey + "  " + k.Public().String()},
		"org key":   {labelNextLogKey + " moat-org1:" + k.Public().String()[len("moat-log1:"):]},
		"truncated": {NextLogKeyLine(k.Public())[:200]},
	} {
		if _, err := NextLogKey(&Checkpoint{Origin: testOrigin, Extensions: ext}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

// TestWitnessReconfiguredWithAnnouncedKey: a witness whose operator
// configures the announced key before the log switches still requires it
// only for a larger tree than the announcing checkpoint.
func TestWitnessReconfiguredWithAnnouncedKey(t *testing.T) {
	ctx := context.Background()
	l := newTestLog(t, testOrigin, "rec1")
	k1, k2 := l.key, testLogKey(t, "rec2")
	st := NewMemoryWitnessStore()
	wk := testWitnessKey(t, "w.example/2", CosignatureEd25519)
	newW := func(k *keys.LogPrivateKey) *Witness {
		w, err := NewWitness(WitnessConfig{Keys: []*WitnessPrivateKey{wk}, Logs: map[string]*keys.LogPublicKey{testOrigin: k.Public()}, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	for i := range 3 {
		l.append(string(rune('a' + i)))
	}
	add := func(w *Witness, old uint64, note []byte, size uint64) error {
		_, err := w.AddCheckpoint(ctx, &AddCheckpointRequest{OldSize: old, Proof: l.proof(old, size), Checkpoint: note}, testTime)
		return err
	}
	if err := add(newW(k1), 0, l.announce(2, k1, k2.Public()), 2); err != nil {
		t.Fatal(err)
	}
	w := newW(k2)
	if err := add(w, 2, l.signWith(2, k2), 2); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("announced key at the announcing size: %v", err)
	}
	if err := add(w, 2, l.signWith(3, k1), 3); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("old key after the announcement: %v", err)
	}
	if err := add(w, 2, l.signWith(3, k2), 3); err != nil {
		t.Fatal(err)
	}
}
