package tlog

import (
	"bytes"
	"context"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
)

var update = flag.Bool("update", false, "rewrite testdata/example-checkpoint.txt")

// exampleCheckpoint builds the example of docs/spec/tlog.md §Test vectors
// from its fixed inputs.
func exampleCheckpoint(t *testing.T) (note []byte, log *keys.LogPrivateKey, w *WitnessPrivateKey) {
	seed := make([]byte, keys.HybridSeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	log, err := keys.GenerateLogKey(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	wseed := make([]byte, WitnessSeedSize)
	for i := range wseed {
		wseed[i] = byte(0x40 + i)
	}
	if w, err = NewWitnessPrivateKey("witness.example/w1", CosignatureEd25519, wseed); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tr, _ := NewTree(ctx, NewMemoryNodeStore(), 0)
	for _, l := range vectorLeaves {
		tr.Append(ctx, mustHex(l))
	}
	root, _ := tr.Root(ctx, 8)
	c := &Checkpoint{Origin: "moat.example/directory/acme", Size: 8, Root: root}
	note = signNote(t, c, log)
	return cosignNote(t, note, time.Unix(1767225600, 0), w), log, w
}

// TestExampleCheckpoint checks the committed example: it opens under the
// hybrid policy with its cosignature, and but for the ML-DSA-65 line it is
// exactly what the signer produces (the Ed25519 lines are deterministic;
// the ML-DSA-65 line is too with today's signer, but hedged signing would
// be as valid, so that line is only verified).
func TestExampleCheckpoint(t *testing.T) {
	got, log, w := exampleCheckpoint(t)
	const path = "testdata/example-checkpoint.txt"
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(VerifierConfig{Origin: "moat.example/directory/acme", LogKey: log.Public(),
		Witnesses: []*WitnessPublicKey{w.Public()}, Quorum: 1, MaxAge: time.Hour, NotBefore: time.Unix(1767225600, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyCheckpoint(want, nil, time.Unix(1767225600, 0)); err != nil {
		t.Fatalf("committed example does not verify: %v", err)
	}
	pqLine := func(line []byte) bool { return !bytes.HasPrefix(line, []byte("— moat.example/directory/acme +FqYq")) }
	if !bytes.Equal(dropLines(got, pqLine), dropLines(want, pqLine)) || len(dropLines(want, pqLine)) != len(want)-4420-len("— moat.example/directory/acme \n") {
		t.Fatalf("signer output differs from %s (run with -update if the change is intended)", path)
	}
}
