package relay

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/store/mailbox"
)

type fixedSigner struct{}

func (fixedSigner) Sign(msg []byte) ([]byte, error) { return bytes.Repeat([]byte{7}, 64), nil }

func testHead(t testing.TB, head uint64) *mailbox.SignedHead {
	return testHeadAcked(t, head, 0)
}

func testHeadAcked(t testing.TB, head, acked uint64) *mailbox.SignedHead {
	h, err := mailbox.SignHead(fixedSigner{}, mailbox.ID{1, 2}, head, acked, time.UnixMilli(1_800_000_000_000))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func testBatchedHead(t testing.TB, head uint64) *mailbox.BatchedHead {
	hs, err := mailbox.SignHeadBatch(fixedSigner{}, []mailbox.HeadLeaf{{Mailbox: mailbox.ID{3}, Head: 1}, {Mailbox: mailbox.ID{1, 2}, Head: head}, {Mailbox: mailbox.ID{4}, Head: 7}}, time.UnixMilli(1_800_000_000_000))
	if err != nil {
		t.Fatal(err)
	}
	return hs[1]
}

func TestPageRoundTrip(t *testing.T) {
	p := &Page{Head: testHeadAcked(t, 9, 2), Messages: []Message{{3, []byte("a")}, {9, bytes.Repeat([]byte("b"), 2048)}}}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ParsePage(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := q.Marshal()
	if !bytes.Equal(b, b2) || len(q.Messages) != 2 || q.Messages[1].Seq != 9 {
		t.Fatal("round trip changed the page")
	}
	for name, bad := range map[string]*Page{
		"seq above head":     {Head: testHead(t, 2), Messages: []Message{{3, []byte("a")}}},
		"seq not increasing": {Head: testHead(t, 9), Messages: []Message{{3, []byte("a")}, {3, []byte("b")}}},
		"seq zero":           {Head: testHead(t, 9), Messages: []Message{{0, []byte("a")}}},
		"seq at the floor":   {Head: testHeadAcked(t, 9, 3), Messages: []Message{{3, []byte("a")}}},
	} {
		b, err := bad.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParsePage(b); err != ErrMalformed {
			t.Errorf("%s: %v", name, err)
		}
	}
	for i := range len(b) {
		if _, err := ParsePage(b[:i]); err != ErrMalformed {
			t.Fatalf("truncated at %d: %v", i, err)
		}
	}
	if _, err := ParsePage(append(b, 0)); err != ErrMalformed {
		t.Fatal("trailing byte accepted")
	}
}

func TestReceiptRoundTrip(t *testing.T) {
	r := &Receipt{Seq: 5, Duplicate: true, Head: testBatchedHead(t, 5)}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ParseReceipt(b)
	if err != nil || q.Seq != 5 || !q.Duplicate || q.Head.Head != 5 {
		t.Fatalf("%v %+v", err, q)
	}
	bad := bytes.Clone(b)
	bad[10] = 2 // duplicate flag
	if _, err := ParseReceipt(bad); err != ErrMalformed {
		t.Fatal("duplicate flag 2 accepted")
	}
	bad[1] = 1 // version 1 carried a SignedMailboxHead
	if _, err := ParseReceipt(bad); err != ErrMalformed {
		t.Fatal("version 1 accepted")
	}
	for i := range len(b) {
		if _, err := ParseReceipt(b[:i]); err != ErrMalformed {
			t.Fatalf("truncated at %d: %v", i, err)
		}
	}
	if _, err := ParseReceipt(append(bytes.Clone(b), 0)); err != ErrMalformed {
		t.Fatal("trailing byte accepted")
	}
	r.Seq = 6 // above the head
	b, _ = r.Marshal()
	if _, err := ParseReceipt(b); err != ErrMalformed {
		t.Fatal("seq above head accepted")
	}
}

func TestPushAck(t *testing.T) {
	b := MarshalPushAck(42)
	if n, err := ParsePushAck(b); err != nil || n != 42 {
		t.Fatal(n, err)
	}
	if _, err := ParsePushAck(append(b, 0)); err != ErrMalformed {
		t.Fatal("trailing byte accepted")
	}
	b[0] = typeMailboxPage
	if _, err := ParsePushAck(b); err != ErrMalformed {
		t.Fatal("wrong type accepted")
	}
}

func FuzzParsePage(f *testing.F) {
	p := &Page{Head: testHead(f, 9), Messages: []Message{{3, []byte("a")}, {9, []byte("bc")}}}
	b, _ := p.Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePage(data)
		if err != nil {
			return
		}
		out, err := p.Marshal()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzParseReceipt(f *testing.F) {
	r := &Receipt{Seq: 5, Head: testBatchedHead(f, 5)}
	b, _ := r.Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseReceipt(data)
		if err != nil {
			return
		}
		out, err := r.Marshal()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzParsePushAck(f *testing.F) {
	f.Add(MarshalPushAck(1))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParsePushAck(data)
		if err == nil && !bytes.Equal(MarshalPushAck(n), data) {
			t.Fatal("round trip")
		}
	})
}

// TestStoreMailboxIDDefinition: the first 16 bytes of
// SHA-256("moat/v1/relay/mailbox-id" || 0x00 || tenant || device)
// (docs/spec/api.md §Mailbox ids).
func TestStoreMailboxIDDefinition(t *testing.T) {
	mb := sealed.NewMailboxID([16]byte{0x7a, 1}, [16]byte{0xde, 2})
	h := sha256.New()
	h.Write([]byte("moat/v1/relay/mailbox-id"))
	h.Write([]byte{0})
	h.Write(mb[:])
	id := StoreMailboxID(mb)
	if !bytes.Equal(id[:], h.Sum(nil)[:16]) {
		t.Fatalf("StoreMailboxID = %x, want %x", id, h.Sum(nil)[:16])
	}
}
