package relay

import (
	"bytes"
	"errors"
	"testing"
)

func TestSendBatchRoundTrip(t *testing.T) {
	items := []BatchItem{{Auth: []byte("auth one"), Envelope: bytes.Repeat([]byte{1}, 1024)}, {Auth: nil, Envelope: nil}}
	b, err := MarshalSendBatch(items)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseSendBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[0].Auth, items[0].Auth) || !bytes.Equal(got[0].Envelope, items[0].Envelope) ||
		len(got[1].Auth) != 0 || len(got[1].Envelope) != 0 {
		t.Fatalf("round trip: %+v", got)
	}
}

// TestSendBatchStrict: the parser refuses no items, more than
// MaxBatchItems, trailing bytes, a wrong type or version, a truncated
// item and an oversize encoding; the encoder refuses to build them.
func TestSendBatchStrict(t *testing.T) {
	one := []BatchItem{{Auth: []byte{1}, Envelope: []byte{2}}}
	good, err := MarshalSendBatch(one)
	if err != nil {
		t.Fatal(err)
	}
	many := make([]BatchItem, MaxBatchItems+1)
	if _, err := MarshalSendBatch(many); !errors.Is(err, ErrMalformed) {
		t.Fatal("encoded 65 items")
	}
	if _, err := MarshalSendBatch(nil); !errors.Is(err, ErrMalformed) {
		t.Fatal("encoded no items")
	}
	if _, err := ParseSendBatch(must(MarshalSendBatch(many[:MaxBatchItems]))); err != nil {
		t.Fatalf("64 items: %v", err)
	}
	// 65 items, framed by hand.
	over := []byte{typeSendBatch, wireVersion, 0, byte(5 * (MaxBatchItems + 1) >> 8), byte(5 * (MaxBatchItems + 1) & 0xff)}
	for range MaxBatchItems + 1 {
		over = append(over, 0, 0, 0, 0, 0)
	}
	bad := map[string][]byte{
		"empty":          {typeSendBatch, wireVersion, 0, 0, 0},
		"65 items":       over,
		"trailing":       append(append([]byte(nil), good...), 0),
		"type":           append([]byte{typeSendReceipt}, good[1:]...),
		"version":        append([]byte{typeSendBatch, 2}, good[2:]...),
		"truncated item": append([]byte{typeSendBatch, wireVersion, 0, 0, 4}, 0, 1, 9, 0),
		"nothing":        nil,
		"oversize":       append(append([]byte(nil), good...), make([]byte, MaxBatchSize)...),
	}
	for name, b := range bad {
		if _, err := ParseSendBatch(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestBatchResultsStrict(t *testing.T) {
	rc := &Receipt{Seq: 3, Head: testBatchedHead(t, 9)}
	rs := []BatchResult{{Status: 200, Receipt: rc}, {Status: 429, RetryAfter: 2}, {Status: 403}, {Status: 503, RetryAfter: 5}}
	b, err := MarshalBatchResults(rs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseBatchResults(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].Receipt.Seq != 3 || got[1].RetryAfter != 2 || got[2].Status != 403 || got[3].RetryAfter != 5 {
		t.Fatalf("round trip: %+v", got)
	}
	for name, r := range map[string]BatchResult{
		"200 without receipt":    {Status: 200},
		"403 with receipt":       {Status: 403, Receipt: rc},
		"429 without wait":       {Status: 429},
		"403 with wait":          {Status: 403, RetryAfter: 1},
		"status not of a send":   {Status: 418},
		"success other than 200": {Status: 204},
	} {
		if _, err := MarshalBatchResults([]BatchResult{r}); !errors.Is(err, ErrMalformed) {
			t.Errorf("encoded %s", name)
		}
		// The same, framed by hand.
		var rcb []byte
		if r.Receipt != nil {
			rcb = must(r.Receipt.Marshal())
		}
		item := append([]byte{byte(r.Status >> 8), byte(r.Status), 0, 0, 0, byte(r.RetryAfter), byte(len(rcb) >> 8), byte(len(rcb))}, rcb...)
		enc := append([]byte{typeSendBatchResults, wireVersion, 0, byte(len(item) >> 8), byte(len(item))}, item...)
		if _, err := ParseBatchResults(enc); !errors.Is(err, ErrMalformed) {
			t.Errorf("parsed %s", name)
		}
	}
	for name, b := range map[string][]byte{
		"empty":    {typeSendBatchResults, wireVersion, 0, 0, 0},
		"trailing": append(append([]byte(nil), b...), 0),
		"type":     append([]byte{typeSendBatch}, b[1:]...),
		"version":  append([]byte{typeSendBatchResults, 2}, b[2:]...),
	} {
		if _, err := ParseBatchResults(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := MarshalBatchResults(make([]BatchResult, MaxBatchItems+1)); !errors.Is(err, ErrMalformed) {
		t.Error("encoded 65 results")
	}
}

func FuzzParseSendBatch(f *testing.F) {
	f.Add(must(MarshalSendBatch([]BatchItem{{Auth: []byte{1}, Envelope: []byte{2, 3}}, {}})))
	f.Add([]byte{typeSendBatch, wireVersion, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		items, err := ParseSendBatch(data)
		if err != nil {
			return
		}
		b, err := MarshalSendBatch(items)
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("round trip: %x != %x (%v)", b, data, err)
		}
	})
}

func FuzzParseBatchResults(f *testing.F) {
	f.Add(must(MarshalBatchResults([]BatchResult{{Status: 200, Receipt: &Receipt{Seq: 1, Head: testBatchedHead(f, 1)}}, {Status: 429, RetryAfter: 3}})))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ParseBatchResults(data)
		if err != nil {
			return
		}
		b, err := MarshalBatchResults(rs)
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("round trip: %x != %x (%v)", b, data, err)
		}
	})
}
