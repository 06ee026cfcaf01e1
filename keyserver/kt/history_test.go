package kt_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

func cloneHistory(t testing.TB, r *kt.HistoryResponse) *kt.HistoryResponse {
	t.Helper()
	return must(kt.ParseHistoryResponse(must(r.Marshal())))
}

// TestHistory: the versions of a label chain; a client reads them all, or
// those since a version it knows, and rejects gaps, reordering,
// substitution and truncation.
func TestHistory(t *testing.T) {
	w := newWorld(t, 40)
	a2 := must(w.d.Enrol(w.alice, w.a1, at(2)))
	must(w.d.PublishEpoch(at(3)))
	must(w.d.PublishEpoch(at(4))) // alice unchanged
	ok(t, w.d.Revoke(a2, org.ReasonLost, at(5)))
	must(w.d.PublishEpoch(at(6)))
	must(w.d.Enrol(w.alice, w.a1, at(7)))
	must(w.d.PublishEpoch(at(8)))
	n := len(must(w.d.Records(org.Label{User: w.alice})))
	if n != 4 {
		t.Fatalf("%d versions", n)
	}

	c := w.client(t)
	full := must(c.VerifyHistory(w.tenant, w.alice, kt.Position{}, must(w.d.History(w.alice, 0, 0)), at(9)))
	if len(full.Records) != 4 || full.Position.Version != 4 || full.Epoch != 4 || len(full.Devices) != 2 {
		t.Fatalf("full history: %d records, position %+v, %d devices", len(full.Records), full.Position, len(full.Devices))
	}
	for i, r := range full.Records {
		if r.Version != uint32(i+1) {
			t.Fatal("versions out of order")
		}
	}
	// Since version 2: the client knows the position after version 2.
	part := must(c.VerifyHistory(w.tenant, w.alice, kt.Position{}, must(w.d.History(w.alice, 0, c.TreeSize())), at(9)))
	pos2 := kt.Position{Version: 2, Commitment: must(kt.Commit(full.Label, part.Records[1])), Epoch: part.Records[1].Epoch, Head: part.Values[1].Head}
	since := must(c.VerifyHistory(w.tenant, w.alice, pos2, must(w.d.History(w.alice, 2, c.TreeSize())), at(9)))
	if len(since.Records) != 2 || since.Position != full.Position {
		t.Fatalf("since 2: %d records, %+v", len(since.Records), since.Position)
	}
	// Since the latest: nothing new, the map still holds the position.
	none := must(c.VerifyHistory(w.tenant, w.alice, full.Position, must(w.d.History(w.alice, 4, c.TreeSize())), at(9)))
	if len(none.Records) != 0 || none.Position != full.Position || none.Devices != nil {
		t.Fatal("empty history")
	}
	// An absent user's history is empty.
	must(c.VerifyHistory(w.tenant, uid(9), kt.Position{}, must(w.d.History(uid(9), 0, c.TreeSize())), at(9)))

	size := c.TreeSize()
	muts := map[string]struct {
		since kt.Position
		from  uint32
		mut   func(r *kt.HistoryResponse)
		step  kt.ProofStep
	}{
		"gap":                                     {kt.Position{}, 0, func(r *kt.HistoryResponse) { r.Records = slices.Delete(r.Records, 1, 2) }, kt.StepHistory},
		"reordered":                               {kt.Position{}, 0, func(r *kt.HistoryResponse) { r.Records[1], r.Records[2] = r.Records[2], r.Records[1] }, kt.StepHistory},
		"first record missing":                    {kt.Position{}, 0, func(r *kt.HistoryResponse) { r.Records = r.Records[1:] }, kt.StepHistory},
		"latest record missing":                   {kt.Position{}, 0, func(r *kt.HistoryResponse) { r.Records = r.Records[:3] }, kt.StepHistory},
		"no records for a present label":          {kt.Position{}, 0, func(r *kt.HistoryResponse) { r.Records = nil }, kt.StepHistory},
		"record substituted":                      {kt.Position{}, 0, func(r *kt.HistoryResponse) { r.Records[1].Value[len(r.Records[1].Value)-1] ^= 1 }, kt.StepHistory},
		"record duplicated":                       {kt.Position{}, 0, func(r *kt.HistoryResponse) { r.Records = slices.Insert(r.Records, 1, r.Records[1]) }, kt.StepHistory},
		"since: not chained to the known version": {pos2, 2, func(r *kt.HistoryResponse) { r.Records[0].Prev[0] ^= 1 }, kt.StepHistory},
		"since: skips a version":                  {pos2, 2, func(r *kt.HistoryResponse) { r.Records = r.Records[1:] }, kt.StepHistory},
		"since: proof of another label": {pos2, 2, func(r *kt.HistoryResponse) {
			r.Proof = must(w.d.History(uid(9), 0, size)).Proof
		}, kt.StepVRF},
	}
	for name, m := range muts {
		t.Run(name, func(t *testing.T) {
			r := cloneHistory(t, must(w.d.History(w.alice, m.from, size)))
			m.mut(r)
			before := state(t, c)
			_, err := c.VerifyHistory(w.tenant, w.alice, m.since, r, at(9))
			wantProofError(t, err, m.step)
			sameState(t, c, before)
		})
	}
	t.Run("since mismatch", func(t *testing.T) {
		r := must(w.d.History(w.alice, 1, size))
		if _, err := c.VerifyHistory(w.tenant, w.alice, pos2, r, at(9)); !errors.Is(err, kt.ErrSince) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("timeline gap inside a value", func(t *testing.T) {
		// The operator publishes a value whose timeline skips the entries
		// of the change: a new head, no entries.
		must(w.d.Enrol(w.alice, w.a1, at(10)))
		v := must(w.d.Tenant.UserValue(w.alice))
		v.Entries = nil // head moved on, entries withheld
		w.d.Inject(org.Label{User: w.alice}, must(v.Marshal()))
		must(w.d.PublishEpoch(at(11)))
		before := state(t, c)
		_, err := c.VerifyHistory(w.tenant, w.alice, full.Position, must(w.d.History(w.alice, 4, c.TreeSize())), at(12))
		ke := wantProofError(t, err, kt.StepValue)
		if !errors.Is(ke, org.ErrTimelineGap) {
			t.Fatalf("got %v", err)
		}
		sameState(t, c, before)
	})
}

// TestT31HistoryRecordEpochs is the history part of T31: a record's epoch
// chooses the CA key its value is verified under (§History), so the
// directory must not backdate a version to before the epoch of the one it
// follows, nor date one after the epoch the history is proven at. Each
// record below chains correctly and opens the map's commitment; only its
// epoch is wrong, and the history is refused at the history step with the
// client's state unchanged. The same record with the epoch that
// published it is accepted.
func TestT31HistoryRecordEpochs(t *testing.T) {
	// run publishes alice's third value (her second device revoked) as a record
	// with the epoch epochOf(previous record's epoch, publishing epoch)
	// and verifies her whole history with a fresh client.
	run := func(t *testing.T, epochOf func(prev, published uint64) uint64) (*kt.Client, []byte, error) {
		w := newWorld(t, 311)
		ok(t, w.d.PublishQuietEpochs(2, at(2)))
		a2 := must(w.d.Enrol(w.alice, w.a1, at(3)))
		must(w.d.PublishEpoch(at(3))) // version 2, at epoch 3
		recs := must(w.d.Records(org.Label{User: w.alice}))
		prev := recs[len(recs)-1]
		if len(recs) != 2 || prev.Epoch != 3 {
			t.Fatalf("%d records, the last of epoch %d", len(recs), prev.Epoch)
		}
		lres := must(w.client(t).VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(4)))
		c := w.client(t)
		ok(t, w.d.Revoke(a2, org.ReasonLost, at(4)))
		v := must(w.d.Tenant.UserValue(w.alice))
		published := w.d.Size()
		next := &kt.ValueRecord{
			Epoch: epochOf(prev.Epoch, published), Version: prev.Version + 1, Prev: must(kt.Commit(lres.Label, prev)),
			Nonce: [kt.NonceSize]byte{0x31}, Value: must(v.Marshal()),
		}
		ok(t, w.d.InjectRecord(org.Label{User: w.alice}, next))
		if ep := must(w.d.PublishEpoch(at(5))); ep.Entry.Epoch != published {
			t.Fatalf("published at epoch %d, want %d", ep.Entry.Epoch, published)
		}
		before := state(t, c)
		res, err := c.VerifyHistory(w.tenant, w.alice, kt.Position{}, must(w.d.History(w.alice, 0, 0)), at(6))
		if err == nil && (len(res.Records) != 3 || res.Records[2].Epoch != next.Epoch) {
			t.Fatalf("history: %d records", len(res.Records))
		}
		return c, before, err
	}
	for name, epochOf := range map[string]func(prev, published uint64) uint64{
		"same epoch as the previous version": func(prev, _ uint64) uint64 { return prev },
		"before the previous version":        func(prev, _ uint64) uint64 { return prev - 1 },
		"after the proven epoch":             func(_, published uint64) uint64 { return published + 3 },
	} {
		t.Run(name, func(t *testing.T) {
			c, before, err := run(t, epochOf)
			wantProofError(t, err, kt.StepHistory)
			sameState(t, c, before)
		})
	}
	t.Run("the publishing epoch", func(t *testing.T) {
		if _, _, err := run(t, func(_, published uint64) uint64 { return published }); err != nil {
			t.Fatal(err)
		}
	})
}
