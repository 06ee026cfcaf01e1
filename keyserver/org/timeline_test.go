package org

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

// TestUserValueHeadMustMatchLastEntry checks that a user value whose head
// does not name its last entry (sequence number or EntryHash) is refused
// by ParseUserValue and by Marshal (§Security timeline: the head is the
// last entry's sequence number and hash). A client caches the CA signature
// of a value's last entry under the head hash, so a head that is not the
// last entry's hash would let a forged last entry borrow that signature.
func TestUserValueHeadMustMatchLastEntry(t *testing.T) {
	f := newFixture(t, 601)
	f.enrol(t, uid(1), t0)
	var enc []byte
	for _, up := range must(f.t.Publish(t0)) {
		if up.Label.User == uid(1) {
			enc = up.Value
		}
	}
	v := must(ParseUserValue(enc))
	if len(v.Entries) < 2 {
		t.Fatalf("%d entries", len(v.Entries))
	}
	// The head is the encoding's last 40 bytes: seq (8) then hash (32).
	headAt := len(enc) - 40
	if got := binary.BigEndian.Uint64(enc[headAt:]); got != v.Head.Seq {
		t.Fatalf("head sequence %d at offset, want %d", got, v.Head.Seq)
	}

	badHash := bytes.Clone(enc)
	badHash[len(badHash)-1] ^= 1
	if _, err := ParseUserValue(badHash); !errors.Is(err, ErrMalformed) {
		t.Fatalf("head hash mismatch: %v", err)
	}
	badSeq := bytes.Clone(enc)
	binary.BigEndian.PutUint64(badSeq[headAt:], v.Head.Seq+1)
	if _, err := ParseUserValue(badSeq); !errors.Is(err, ErrMalformed) {
		t.Fatalf("head sequence mismatch: %v", err)
	}

	// A forged last entry that keeps the old head: refused on encode and
	// on parse (the encoding is built with the correct head, then the old
	// head is written back over it).
	forged := *v.Entries[len(v.Entries)-1]
	forged.Time = forged.Time.Add(time.Hour)
	v.Entries[len(v.Entries)-1] = &forged
	if _, err := v.Marshal(); err == nil {
		t.Fatal("value with a stale head encoded")
	}
	v.Head.Hash = must(forged.Hash())
	fenc := must(v.Marshal())
	copy(fenc[len(fenc)-32:], enc[len(enc)-32:])
	if _, err := ParseUserValue(fenc); !errors.Is(err, ErrMalformed) {
		t.Fatalf("forged last entry under the old head: %v", err)
	}
}
