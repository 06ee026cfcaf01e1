package tlog

import (
	"bytes"
	"context"
	"crypto"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
)

const testOrigin = "moat.example/directory/acme"

// seeded returns a deterministic reader for key generation in tests.
func seeded(s string) *rand.ChaCha8 {
	var seed [32]byte
	copy(seed[:], s)
	return rand.NewChaCha8(seed)
}

func testLogKey(t testing.TB, s string) *keys.LogPrivateKey {
	k, err := keys.GenerateLogKey(seeded("log " + s))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testWitnessKey(t testing.TB, name string, typ CosignatureType) *WitnessPrivateKey {
	k, err := GenerateWitnessKey(seeded(name+typ.String()), name, typ)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func signNote(t testing.TB, c *Checkpoint, k *keys.LogPrivateKey) []byte {
	n, err := SignCheckpoint(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// cosignNote appends cosignatures from ws at time ts to a signed note.
func cosignNote(t testing.TB, msg []byte, ts time.Time, ws ...*WitnessPrivateKey) []byte {
	c, err := checkpointOfNote(msg)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		cs, err := CosignCheckpoint(w, c, ts)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := cs.Marshal()
		if msg, err = AddCosignatures(msg, l); err != nil {
			t.Fatal(err)
		}
	}
	return msg
}

// testLog is a log: a tree, a key, and the checkpoints it signs.
type testLog struct {
	t      testing.TB
	origin string
	key    *keys.LogPrivateKey
	tree   *Tree
}

func newTestLog(t testing.TB, origin, keySeed string) *testLog {
	tr, err := NewTree(context.Background(), NewMemoryNodeStore(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{t: t, origin: origin, key: testLogKey(t, keySeed), tree: tr}
}

func (l *testLog) append(leaves ...string) {
	var ls [][]byte
	for _, s := range leaves {
		ls = append(ls, []byte(s))
	}
	if _, err := l.tree.Append(context.Background(), ls...); err != nil {
		l.t.Fatal(err)
	}
}

func (l *testLog) checkpoint(size uint64) *Checkpoint {
	r, err := l.tree.Root(context.Background(), size)
	if err != nil {
		l.t.Fatal(err)
	}
	return &Checkpoint{Origin: l.origin, Size: size, Root: r}
}

func (l *testLog) sign(size uint64) []byte { return signNote(l.t, l.checkpoint(size), l.key) }

func (l *testLog) proof(old, size uint64) []Hash {
	p, err := l.tree.ConsistencyProof(context.Background(), old, size)
	if err != nil {
		l.t.Fatal(err)
	}
	return p
}

// dropLines returns msg without the signature lines that contain sub.
func dropLines(msg []byte, keep func(line []byte) bool) []byte {
	text, sigs, _ := splitNote(msg)
	out := append(bytes.Clone(text), '\n')
	for _, l := range bytes.SplitAfter(sigs, []byte("\n")) {
		if len(l) > 0 && keep(l) {
			out = append(out, l...)
		}
	}
	return out
}

var testTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testFloor is the time floor (VerifierConfig.NotBefore) of test
// verifiers that are not about the floor: well before every test time.
var testFloor = testTime.Add(-30 * 24 * time.Hour)

const cryptoHash0 = crypto.Hash(0)
