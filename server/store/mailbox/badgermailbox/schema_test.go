package badgermailbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/moat-im/moat/server/store/mailbox"
)

// encodeRecord re-encodes a decoded "M" record under key.
func encodeRecord(key []byte, r *record) []byte {
	if r.kind == kindHeld {
		return seal(key, encodeHeld(r.id, r.expiresMs, r.untilMs, r.body))
	}
	return encodeAcked(key, r.id, r.untilMs, &r.digest)
}

// FuzzRecord checks that decodeRecord accepts exactly what the encoders
// write: any value it accepts re-encodes to the same bytes, and the
// encoders' values decode to what they were given. Anything else is
// ErrCorrupt, never a panic.
func FuzzRecord(f *testing.F) {
	key := msgKey(mailbox.ID{1}, 7)
	f.Add(uint64(7), seal(key, encodeHeld(mailbox.MessageID{2}, 2000, 1000, []byte("body"))))
	d := [32]byte{3}
	f.Add(uint64(7), encodeAcked(key, mailbox.MessageID{2}, 1000, &d))
	f.Add(uint64(1), []byte{1, 1})
	f.Fuzz(func(t *testing.T, seq uint64, v []byte) {
		k := msgKey(mailbox.ID{1}, seq)
		r, err := decodeRecord(k, v)
		if err != nil {
			if !errors.Is(err, mailbox.ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
		} else if again := encodeRecord(k, &r); !bytes.Equal(again, v) {
			t.Fatalf("accepted %x, re-encoded as %x", v, again)
		}
		// Round trip of a held message built from the input.
		if len(v) < 1 || len(v) > mailbox.MaxBodySize {
			return
		}
		var id mailbox.MessageID
		copy(id[:], v)
		until := int64(seq >> 2)
		exp := until + int64(seq&3)
		if exp <= 0 {
			return
		}
		h, err := decodeRecord(k, seal(k, encodeHeld(id, exp, until, v)))
		if err != nil || h.kind != kindHeld || h.id != id || h.expiresMs != exp || h.untilMs != until || !bytes.Equal(h.body, v) {
			t.Fatalf("held round trip: %+v, %v", h, err)
		}
		digest := [32]byte(append(bytes.Clone(v), make([]byte, 32)...)[:32])
		a, err := decodeRecord(k, encodeAcked(k, id, until, &digest))
		if err != nil || a.kind != kindAcked || a.id != id || a.untilMs != until || a.digest != digest {
			t.Fatalf("acknowledged round trip: %+v, %v", a, err)
		}
	})
}

// FuzzMeta does the same for "Q" and "t" records.
func FuzzMeta(f *testing.F) {
	mk := metaKey(mailbox.ID{1})
	f.Add(encodeMeta(mk, 5, 3))
	f.Add(encodeCommit(9))
	f.Fuzz(func(t *testing.T, v []byte) {
		if h, a, err := decodeMeta(mk, v); err == nil {
			if a > h || !bytes.Equal(encodeMeta(mk, h, a), v) {
				t.Fatalf("meta %x re-encoded differently", v)
			}
		} else if !errors.Is(err, mailbox.ErrCorrupt) {
			t.Fatal(err)
		}
		if ts, err := decodeCommit(v); err == nil {
			if !bytes.Equal(encodeCommit(ts), v) {
				t.Fatalf("commit %x re-encoded differently", v)
			}
		} else if !errors.Is(err, mailbox.ErrCorrupt) {
			t.Fatal(err)
		}
		if len(v) >= 8 {
			n := binary.BigEndian.Uint64(v)
			if h, a, err := decodeMeta(mk, encodeMeta(mk, n, n/2)); err != nil || h != n || a != n/2 {
				t.Fatalf("meta round trip of %d, %d: %d, %d, %v", n, n/2, h, a, err)
			}
			if n > 0 {
				if _, _, err := decodeMeta(mk, encodeMeta(mk, n-1, n)); !errors.Is(err, mailbox.ErrCorrupt) {
					t.Fatalf("meta with floor %d above head %d: %v", n, n-1, err)
				}
			}
		}
	})
}
