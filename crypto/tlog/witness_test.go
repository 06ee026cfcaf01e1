package tlog

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/mod/sumdb/note"
)

// The example request body of c2sp.org/tlog-witness §add-checkpoint.
const c2spAddCheckpoint = `old 20852014
PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=
jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=
5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=
/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=

example.com/behind-the-sofa
20852163
CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=

— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=
— example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=
`

func TestAddCheckpointRequestExample(t *testing.T) {
	r, err := ParseAddCheckpointRequest([]byte(c2spAddCheckpoint))
	if err != nil {
		t.Fatal(err)
	}
	if r.OldSize != 20852014 || len(r.Proof) != 4 || r.Proof[3].String() != "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=" ||
		!strings.HasPrefix(string(r.Checkpoint), "example.com/behind-the-sofa\n20852163\n") {
		t.Fatalf("parsed %+v", r)
	}
	b, err := r.Marshal()
	if err != nil || string(b) != c2spAddCheckpoint {
		t.Fatalf("round trip: %v", err)
	}
	cp := c2spAddCheckpoint[strings.Index(c2spAddCheckpoint, "\n\n")+2:]
	proofLine := "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
	for name, body := range map[string]string{
		"leading zero":      "old 01\n\n" + cp,
		"old size 2^63":     "old 9223372036854775808\n\n" + cp,
		"two spaces":        "old  1\n\n" + cp,
		"no old line":       "\n" + cp,
		"new instead":       "new 1\n\n" + cp,
		"no empty line":     "old 1\n" + cp,
		"64 proof lines":    "old 1\n" + strings.Repeat(proofLine, 64) + "\n" + cp,
		"short hash":        "old 1\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpka==\n\n" + cp,
		"no checkpoint":     "old 1\n\n",
		"unsigned":          "old 1\n\nexample.com/x\n1\n" + proofLine,
		"CRLF":              strings.ReplaceAll(c2spAddCheckpoint, "\n", "\r\n"),
		"space before line": "old 1\n " + proofLine + "\n" + cp,
	} {
		if _, err := ParseAddCheckpointRequest([]byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: accepted", name)
		}
	}
	if r, err := ParseAddCheckpointRequest([]byte("old 1\n" + strings.Repeat(proofLine, 63) + "\n" + cp)); err != nil || len(r.Proof) != 63 {
		t.Errorf("63 proof lines: %v", err)
	}
}

type witnessFixture struct {
	t    *testing.T
	w    *Witness
	keys []*WitnessPrivateKey
	log  *testLog
}

func newWitnessFixture(t *testing.T, name string, logs ...*testLog) *witnessFixture {
	ks := []*WitnessPrivateKey{testWitnessKey(t, name, CosignatureEd25519), testWitnessKey(t, name, CosignatureMLDSA44)}
	m := map[string]*keys.LogPublicKey{}
	for _, l := range logs {
		m[l.origin] = l.key.Public()
	}
	w, err := NewWitness(WitnessConfig{Keys: ks, Logs: m, Store: NewMemoryWitnessStore()})
	if err != nil {
		t.Fatal(err)
	}
	return &witnessFixture{t: t, w: w, keys: ks, log: logs[0]}
}

func (f *witnessFixture) add(old uint64, proof []Hash, msg []byte, now time.Time) ([]byte, error) {
	return f.w.AddCheckpoint(context.Background(), &AddCheckpointRequest{OldSize: old, Proof: proof, Checkpoint: msg}, now)
}

func wantStatus(t *testing.T, what string, err error, status int) {
	t.Helper()
	if got := StatusCode(err); got != status {
		t.Fatalf("%s: status %d (%v), want %d", what, got, err, status)
	}
}

func TestWitnessAddCheckpoint(t *testing.T) {
	l := newTestLog(t, testOrigin, "a")
	f := newWitnessFixture(t, "witness.example/w1", l)
	l.append("a", "b", "c")
	c3 := l.sign(3)

	body, err := f.add(0, nil, c3, testTime)
	wantStatus(t, "first checkpoint", err, 200)
	sigs, err := ParseCosignatures(body)
	if err != nil || len(sigs) != 2 {
		t.Fatalf("response %q: %v", body, err)
	}
	for i, cs := range sigs {
		if err := VerifyCosignature(f.keys[i].Public(), l.checkpoint(3), cs); err != nil || cs.Timestamp != uint64(testTime.Unix()) {
			t.Fatalf("cosignature %d: %v", i, err)
		}
	}

	// The monitoring checkpoint has the log's lines and the cosignatures.
	mon, err := f.w.Checkpoint(context.Background(), testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	o, err := openNote(mon, testOrigin, l.key.Public(), f.w.PublicKeys())
	if err != nil || o.cosigs[0] == 0 || o.cosigs[1] == 0 || o.c.Size != 3 {
		t.Fatalf("monitoring checkpoint: %v", err)
	}

	// Replaying from old size 0: 409 with the witnessed size.
	_, err = f.add(0, nil, c3, testTime)
	wantStatus(t, "stale old size", err, 409)
	var conflict *ConflictError
	if !errors.As(err, &conflict) || conflict.Size != 3 || string(conflict.Body()) != "3\n" {
		t.Fatalf("conflict %v", err)
	}

	// Same checkpoint again, old = size: a refresh with a later time.
	body, err = f.add(3, nil, c3, testTime.Add(time.Minute))
	wantStatus(t, "refresh", err, 200)
	if sigs, _ := ParseCosignatures(body); sigs[0].Timestamp != uint64(testTime.Add(time.Minute).Unix()) {
		t.Fatal("refresh timestamp")
	}
	// The witness clock going back does not move cosignature time back.
	body, err = f.add(3, nil, c3, testTime.Add(-time.Hour))
	wantStatus(t, "clock back", err, 200)
	if sigs, _ := ParseCosignatures(body); sigs[0].Timestamp != uint64(testTime.Add(time.Minute).Unix()) {
		t.Fatal("cosignature time went back with the witness clock")
	}

	// Growth with a valid proof.
	l.append("d", "e", "f", "g")
	c7 := l.sign(7)
	_, err = f.add(3, l.proof(3, 7), c7, testTime.Add(2*time.Minute))
	wantStatus(t, "growth", err, 200)

	// A bad proof, an empty proof, an extra proof line.
	l.append("h", "i")
	c9 := l.sign(9)
	p := l.proof(7, 9)
	bad := append([]Hash(nil), p...)
	bad[0][0] ^= 1
	_, err = f.add(7, bad, c9, testTime)
	wantStatus(t, "bad proof", err, 422)
	_, err = f.add(7, nil, c9, testTime)
	wantStatus(t, "missing proof", err, 422)
	_, err = f.add(7, append(p, Hash{}), c9, testTime)
	wantStatus(t, "extra proof line", err, 422)
	_, err = f.add(7, []Hash{{}}, c7, testTime)
	wantStatus(t, "proof between equal sizes", err, 422)

	// Split view: another tree of size 7 signed by the same log.
	fork := newTestLog(t, testOrigin, "a")
	fork.append("a", "b", "c", "X", "e", "f", "g")
	_, err = f.add(7, nil, fork.sign(7), testTime)
	wantStatus(t, "split view at the same size", err, 422)
	// A smaller tree is never cosigned: old 7 is above its size (400), and
	// any other old size is not the witnessed one (409).
	_, err = f.add(7, nil, l.sign(5), testTime)
	wantStatus(t, "smaller tree", err, 400)
	_, err = f.add(5, nil, l.sign(5), testTime)
	wantStatus(t, "smaller tree, old = its size", err, 409)
	_, err = f.add(3, l.proof(3, 5), l.sign(5), testTime)
	wantStatus(t, "smaller tree, old = an earlier size", err, 409)

	// The record did not move through the failures.
	mon, _ = f.w.Checkpoint(context.Background(), testOrigin)
	if c, _ := checkpointOfNote(mon); c.Size != 7 {
		t.Fatalf("witnessed size %d after failures, want 7", c.Size)
	}
	_, err = f.add(7, p, c9, testTime)
	wantStatus(t, "valid growth after failures", err, 200)
}

func TestWitnessRejects(t *testing.T) {
	l := newTestLog(t, testOrigin, "a")
	f := newWitnessFixture(t, "witness.example/w1", l)
	l.append("a", "b")

	other := newTestLog(t, "moat.example/directory/other", "a")
	other.append("a")
	_, err := f.add(0, nil, other.sign(1), testTime)
	wantStatus(t, "unknown origin", err, 404)

	wrongKey := newTestLog(t, testOrigin, "wrong")
	wrongKey.append("a", "b")
	_, err = f.add(0, nil, wrongKey.sign(2), testTime)
	wantStatus(t, "wrong log key", err, 403)

	edOnly := dropLines(l.sign(2), func(line []byte) bool { return lineKeyID(line) == logEd25519ID(testOrigin, l.key.Public()) })
	_, err = f.add(0, nil, edOnly, testTime)
	wantStatus(t, "classical signature only", err, 403)

	_, err = f.add(0, []Hash{{1}}, l.sign(2), testTime)
	wantStatus(t, "proof from size 0", err, 422)

	_, err = f.add(0, nil, signUnchecked(t, &Checkpoint{Origin: testOrigin, Size: 0, Root: Hash{1}}, l.key), testTime)
	wantStatus(t, "empty tree with a non-empty root", err, 422)

	_, err = f.add(0, nil, l.sign(0), testTime)
	wantStatus(t, "empty tree", err, 200)

	// A corrupt stored record is the witness's fault: 500, not 400.
	store := NewMemoryWitnessStore()
	store.CompareAndSwap(context.Background(), testOrigin, nil, []byte("garbage"))
	broken, _ := NewWitness(WitnessConfig{Keys: f.keys, Logs: f.w.logs, Store: store})
	_, err = broken.AddCheckpoint(context.Background(), &AddCheckpointRequest{Checkpoint: l.sign(2)}, testTime)
	wantStatus(t, "corrupt record", err, 500)

	if _, err := f.w.Checkpoint(context.Background(), "moat.example/none"); StatusCode(err) != 404 {
		t.Fatal("monitoring an unknown log")
	}
	if _, err := ParseAddCheckpointRequest([]byte("junk")); StatusCode(err) != 400 {
		t.Fatal("malformed request")
	}
}

// signUnchecked signs any checkpoint text with both log lines, bypassing
// SignCheckpoint's own checks, to play a misbehaving log.
func signUnchecked(t *testing.T, c *Checkpoint, k *keys.LogPrivateKey) []byte {
	text, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	n := &note.Note{Text: string(text)}
	pub := k.Public()
	ed := &noteSigner{c.Origin, logEd25519ID(c.Origin, pub), func(m []byte) ([]byte, error) { return k.Ed25519Signer().Sign(nil, m, cryptoHash0) }}
	pq := &noteSigner{c.Origin, logMLDSA65ID(c.Origin, pub), func(m []byte) ([]byte, error) { return k.MLDSA65Signer().Sign(nil, m, cryptoHash0) }}
	msg, err := note.Sign(n, ed, pq)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestWitnessConcurrent sends the same growth to one witness from many
// goroutines: exactly one is cosigned, the others get 409, and the record
// is the grown tree (tlog-witness: check and persist atomically).
func TestWitnessConcurrent(t *testing.T) {
	l := newTestLog(t, testOrigin, "a")
	f := newWitnessFixture(t, "witness.example/w1", l)
	l.append("a", "b", "c")
	if _, err := f.add(0, nil, l.sign(3), testTime); err != nil {
		t.Fatal(err)
	}
	l.append("d")
	c4, p := l.sign(4), l.proof(3, 4)
	var wg sync.WaitGroup
	var mu sync.Mutex
	status := map[int]int{}
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.add(3, p, c4, testTime)
			mu.Lock()
			status[StatusCode(err)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if status[200] != 1 || status[409] != 11 {
		t.Fatalf("statuses %v, want one 200 and eleven 409", status)
	}
}

func TestNewWitnessRejects(t *testing.T) {
	a := testWitnessKey(t, "w.example/a", CosignatureEd25519)
	b := testWitnessKey(t, "w.example/b", CosignatureMLDSA44)
	a2 := testWitnessKey(t, "w.example/a", CosignatureEd25519)
	s := NewMemoryWitnessStore()
	for name, cfg := range map[string]WitnessConfig{
		"no keys":       {Store: s},
		"no store":      {Keys: []*WitnessPrivateKey{a}},
		"two names":     {Keys: []*WitnessPrivateKey{a, b}, Store: s},
		"no Ed25519":    {Keys: []*WitnessPrivateKey{b}, Store: s},
		"two same type": {Keys: []*WitnessPrivateKey{a, a2}, Store: s},
		"bad origin":    {Keys: []*WitnessPrivateKey{a}, Store: s, Logs: map[string]*keys.LogPublicKey{"a b": testLogKey(t, "a").Public()}},
	} {
		if _, err := NewWitness(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestWitnessRecordStrict(t *testing.T) {
	l := newTestLog(t, testOrigin, "a")
	l.append("a")
	r := &witnessRecord{size: 1, root: l.checkpoint(1).Root, time: 5, checkpoint: l.sign(1)}
	b, err := r.marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseWitnessRecord(b); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string][]byte{
		"trailing byte": append(bytes.Clone(b), 0),
		"truncated":     b[:len(b)-1],
		"label":         append([]byte("moat/v1/tlog/witness-recorD"), b[len(labelWitnessRecord):]...),
	} {
		if _, err := parseWitnessRecord(mut); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	r.size = 2
	b, _ = r.marshal()
	if _, err := parseWitnessRecord(b); err == nil {
		t.Error("record whose checkpoint has another size accepted")
	}
}
