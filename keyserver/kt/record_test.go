package kt_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/vmap"
)

func TestRecordChain(t *testing.T) {
	secret := bytes.Repeat([]byte{0x5e}, 32)
	label := vmap.Label{0x1a}
	r1, c1 := must3(kt.NextRecord(secret, label, 3, nil, []byte("v1")))
	r2, c2 := must3(kt.NextRecord(secret, label, 5, r1, []byte("v2")))
	if r1.Version != 1 || r1.Prev != (vmap.Commitment{}) || r2.Version != 2 || r2.Prev != c1 || r2.Epoch != 5 {
		t.Fatalf("chain %+v %+v", r1, r2)
	}
	if c2 != must(kt.Commit(label, r2)) {
		t.Fatal("commitment")
	}
	// Nonces are derived, per label and version, and differ.
	if r1.Nonce != must(kt.DeriveNonce(secret, label, 1)) || r1.Nonce == r2.Nonce {
		t.Fatal("nonces")
	}
	if n := must(kt.DeriveNonce(secret, vmap.Label{0x1b}, 1)); n == r1.Nonce {
		t.Fatal("nonce does not depend on the label")
	}
	// The commitment binds the label.
	if must(kt.Commit(vmap.Label{0x1b}, r1)) == c1 {
		t.Fatal("commitment does not bind the label")
	}
	// Misuse.
	if _, _, err := kt.NextRecord(secret, label, 5, r2, nil); err == nil {
		t.Fatal("epoch not after the previous record's accepted")
	}
	if _, err := kt.DeriveNonce(secret[:31], label, 1); err == nil {
		t.Fatal("short secret accepted")
	}
	for name, r := range map[string]*kt.ValueRecord{
		"version 0":                {Version: 0},
		"version 1 with prev":      {Version: 1, Prev: vmap.Commitment{1}},
		"version 2 without prev":   {Version: 2},
		"epoch beyond 2^63-1":      {Version: 1, Epoch: 1 << 63},
		"value longer than 2^24-1": {Version: 1, Value: make([]byte, 1<<24)},
	} {
		if _, err := r.Marshal(); !errors.Is(err, kt.ErrMalformed) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

// TestRecordVector checks the example of docs/spec/directory.md §Commitments.
func TestRecordVector(t *testing.T) {
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(i)
	}
	var label vmap.Label
	for i := range label {
		label[i] = 0xa0 + byte(i%16)
	}
	r, c := must3(kt.NextRecord(secret, label, 7, nil, []byte("value")))
	// Computed independently (Python hmac/hashlib) from the spec's text.
	const (
		wantNonce  = "9859e9c90e7bd22011e8ee1561958afdc920f38457a998abfa5c518a6bf4f628"
		wantRecord = "5001" + "0000000000000007" + "00000001" +
			"0000000000000000000000000000000000000000000000000000000000000000" +
			wantNonce + "000005" + "76616c7565"
		wantCommit = "9dfda11911b5c5893103317bb0049b7a4bde52815d754c03c3f48cc563f896c4"
	)
	if got := hex.EncodeToString(r.Nonce[:]); got != wantNonce {
		t.Errorf("nonce %s", got)
	}
	if got := hex.EncodeToString(must(r.Marshal())); got != wantRecord {
		t.Errorf("record %s", got)
	}
	if got := hex.EncodeToString(c[:]); got != wantCommit {
		t.Errorf("commitment %s", got)
	}
}

func TestEpochEntry(t *testing.T) {
	e := kt.EpochEntry{Epoch: 9, Time: time.Unix(1767225600, 0), MapRoot: vmap.EmptyRoot()}
	enc := must(e.Marshal())
	if len(enc) != kt.EpochEntrySize || enc[0] != 0x51 || enc[1] != 1 {
		t.Fatalf("entry %x", enc)
	}
	got := must(kt.ParseEpochEntry(enc))
	if got.Epoch != 9 || !got.Time.Equal(e.Time) || got.MapRoot != e.MapRoot {
		t.Fatal("round trip")
	}
	for name, bad := range map[string]kt.EpochEntry{
		"fraction of a second": {Time: time.Unix(1, 5)},
		"before 1970":          {Time: time.Unix(-1, 0)},
		"epoch beyond 2^63-1":  {Epoch: 1 << 63, Time: time.Unix(0, 0)},
	} {
		if _, err := bad.Marshal(); err == nil {
			t.Errorf("%s encoded", name)
		}
	}
}

func must3[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}
