package kt_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// keepSigners returns note with only the signature lines of the log and
// of the first n witnesses that cosigned it.
func keepSigners(note []byte, origin string, n int) []byte {
	text, sigs, _ := strings.Cut(string(note), "\n\n")
	out := text + "\n\n"
	seen := map[string]bool{}
	for line := range strings.Lines(sigs) {
		rest, _ := strings.CutPrefix(line, "— ")
		name, _, _ := strings.Cut(rest, " ")
		if name != origin && !seen[name] {
			if len(seen) == n {
				continue
			}
			seen[name] = true
		}
		out += line
	}
	return []byte(out)
}

// TestT28StaleHeadClient is adversarial case T28 at the client: a
// directory that freezes its head. Once the witnessed time of the newest
// checkpoint it serves is older than MaxAge, lookups are refused with
// tlog.ErrStale and leave the client's state unchanged; the tree size the
// client trusts never goes backwards across lookups, and a smaller
// checkpoint than the trusted one is refused.
func TestT28StaleHeadClient(t *testing.T) {
	w := newWorld(t, 28) // epoch 0 at minute 1
	c := w.client(t)
	must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(2)))
	// A response against the size-1 tree, kept by the operator.
	small := must(w.d.Lookup(w.alice, 0))

	var size uint64
	for i := range 3 {
		must(w.d.PublishEpoch(at(3 + i)))
		must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, c.TreeSize())), at(3+i)))
		if c.TreeSize() <= size {
			t.Fatalf("tree size went from %d to %d", size, c.TreeSize())
		}
		size = c.TreeSize()
	}

	// A smaller checkpoint is refused, whatever base size it claims.
	before := state(t, c)
	if _, err := c.VerifyLookup(w.tenant, w.alice, cloneLookup(t, small), at(6)); err == nil {
		t.Fatal("a lookup against a smaller checkpoint was accepted")
	}
	r := cloneLookup(t, small)
	r.Checkpoint.BaseSize = size
	if _, err := c.VerifyLookup(w.tenant, w.alice, r, at(6)); err == nil {
		t.Fatal("a smaller checkpoint claiming the client's size was accepted")
	}
	sameState(t, c, before)
	if c.TreeSize() != size {
		t.Fatalf("tree size %d, want %d", c.TreeSize(), size)
	}

	// The head freezes: no epoch, no new cosignatures. Within MaxAge the
	// frozen head is still fine.
	frozen := at(5)
	must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, size)), frozen.Add(maxAge-time.Minute)))
	before = state(t, c)
	late := frozen.Add(maxAge + time.Minute)
	for _, when := range []time.Time{late, late.Add(24 * time.Hour)} {
		_, err := c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, size)), when)
		if !errors.Is(err, tlog.ErrStale) {
			t.Fatalf("frozen head at %v: got %v, want tlog.ErrStale", when.Sub(frozen), err)
		}
		sameState(t, c, before)
	}
	// A new client is refused the frozen head too.
	c2 := w.client(t)
	if _, err := c2.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), late); !errors.Is(err, tlog.ErrStale) {
		t.Fatalf("new client, frozen head: got %v, want tlog.ErrStale", err)
	}
	if c2.TreeSize() != 0 {
		t.Fatalf("new client trusts size %d", c2.TreeSize())
	}

	// Fresh cosignatures of the same head are accepted; the size stays.
	ok(t, w.d.Cosign(late))
	must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, size)), late.Add(time.Minute)))
	if c.TreeSize() != size {
		t.Fatalf("tree size %d after recosigning, want %d", c.TreeSize(), size)
	}
	// A response the operator kept from before is older than the one now
	// trusted, and the smaller tree still refused.
	if _, err := c.VerifyLookup(w.tenant, w.alice, cloneLookup(t, small), late.Add(time.Minute)); err == nil {
		t.Fatal("smaller checkpoint accepted after recosigning")
	}
	if c.TreeSize() != size {
		t.Fatalf("tree size went back to %d", c.TreeSize())
	}
}

// TestT28StaleEntryUnderFreshCheckpoint is adversarial case T28 for the
// epoch entry (docs/spec/directory.md §Verifying a lookup, step 2): a
// directory serves the current, witnessed checkpoint with an older
// epoch's entry, validly included in it, and that epoch's map proof and
// record, in which a device since revoked is still present. A client that
// trusts no checkpoint yet (so the inclusion proof is a whole RFC 6962
// proof at the old entry's index) refuses it as an epoch error, with its
// state unchanged, and then accepts the current entry.
func TestT28StaleEntryUnderFreshCheckpoint(t *testing.T) {
	w := newWorld(t, 991)
	old := must(w.d.Lookup(w.alice, 0)) // epoch 0: a1 only
	a2 := must(w.d.Enrol(w.alice, w.a1, at(2)))
	ok(t, w.d.Revoke(w.a1, org.ReasonRetired, at(2)))
	must(w.d.PublishEpoch(at(3)))
	cur := must(w.d.Lookup(w.alice, 0))
	r := cloneLookup(t, cur)
	r.Proof.Entry = old.Proof.Entry
	r.Proof.Inclusion = must(w.d.Tree.InclusionProof(t.Context(), old.Proof.Entry.Epoch, w.d.Size()))
	r.Proof.MapProof = old.Proof.MapProof
	r.Proof.VRFProof = old.Proof.VRFProof
	r.Record, r.RecordProof = old.Record, old.RecordProof
	if r.Proof.Entry.Epoch+1 == w.d.Size() {
		t.Fatal("the old entry is the last leaf")
	}
	c := w.client(t)
	before := state(t, c)
	res, err := c.VerifyLookup(w.tenant, w.alice, r, at(4))
	if err == nil {
		t.Fatalf("stale epoch %d accepted under a checkpoint of size %d: revoked a1 usable=%v, a2 usable=%v",
			r.Proof.Entry.Epoch, w.d.Size(), res.Device(w.a1.ID) != nil, res.Device(a2.ID) != nil)
	}
	wantProofError(t, err, kt.StepEpoch)
	sameState(t, c, before)
	res = must(c.VerifyLookup(w.tenant, w.alice, cur, at(4)))
	if res.Device(w.a1.ID) != nil || res.Device(a2.ID) == nil {
		t.Fatal("current lookup: wrong devices")
	}
}

// TestT30BootstrapClient is adversarial case T30: a new client, with no
// state but its trust bundle, accepts only a checkpoint cosigned by the
// witness quorum and fresh. An operator offering it an old head, a head
// without cosignatures, or one below the quorum is refused, and the
// client stays without a trusted checkpoint.
func TestT30BootstrapClient(t *testing.T) {
	w := newWorld(t, 30) // epoch 0 at minute 1
	oldHead := must(w.d.Lookup(w.alice, 0))
	must(w.d.PublishEpoch(at(2)))
	origin := w.d.TrustBundle().LogOrigin
	quorum := w.d.TrustBundle().Witnesses.Quorum
	now := at(3)

	c := w.client(t)
	if c.TreeSize() != 0 {
		t.Fatalf("new client trusts size %d", c.TreeSize())
	}
	before := state(t, c)
	refuse := func(name string, r *kt.LookupResponse, when time.Time, want error) {
		t.Helper()
		_, err := c.VerifyLookup(w.tenant, w.alice, r, when)
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		if want != nil && !errors.Is(err, want) {
			t.Fatalf("%s: got %v, want %v", name, err, want)
		}
		sameState(t, c, before)
		if c.TreeSize() != 0 {
			t.Fatalf("%s: client trusts size %d", name, c.TreeSize())
		}
	}
	withNote := func(r *kt.LookupResponse, n int) *kt.LookupResponse {
		r = cloneLookup(t, r)
		r.Checkpoint.Note = keepSigners(r.Checkpoint.Note, origin, n)
		return r
	}
	cur := must(w.d.Lookup(w.alice, 0))

	refuse("no cosignatures", withNote(cur, 0), now, tlog.ErrNoQuorum)
	refuse("below quorum", withNote(cur, quorum-1), now, tlog.ErrNoQuorum)
	refuse("old head without cosignatures", withNote(oldHead, 0), at(2), tlog.ErrNoQuorum)
	refuse("old head below quorum", withNote(oldHead, quorum-1), at(2), tlog.ErrNoQuorum)
	refuse("old head, stale", oldHead, at(1).Add(maxAge+time.Minute), tlog.ErrStale)
	refuse("current head, stale", cur, at(2).Add(maxAge+time.Minute), tlog.ErrStale)
	r := cloneLookup(t, cur)
	r.Checkpoint.Note = nil
	refuse("no checkpoint", r, now, nil)

	// Exactly the quorum, fresh: accepted.
	must(c.VerifyLookup(w.tenant, w.alice, withNote(cur, quorum), now))
	if c.TreeSize() != w.d.Size() {
		t.Fatalf("client trusts size %d, want %d", c.TreeSize(), w.d.Size())
	}
	// And then the old head is refused as smaller.
	if _, err := c.VerifyLookup(w.tenant, w.alice, cloneLookup(t, oldHead), now); err == nil {
		t.Fatal("old head accepted after bootstrap")
	}
}
