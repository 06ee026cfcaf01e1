package kt_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
)

// dropSigLines returns note without the signature lines of key name name
// whose signature (after the 4-byte key hash) is sigSize bytes, and how
// many it dropped.
func dropSigLines(t *testing.T, note []byte, name string, sigSize int) ([]byte, int) {
	t.Helper()
	text, sigs, found := strings.Cut(string(note), "\n\n")
	if !found {
		t.Fatal("note without signatures")
	}
	var kept []string
	dropped := 0
	for _, l := range strings.SplitAfter(sigs, "\n") {
		if l == "" {
			continue
		}
		f := strings.Fields(strings.TrimSuffix(l, "\n"))
		if len(f) != 3 || f[0] != "—" {
			t.Fatalf("signature line %q", l)
		}
		raw, err := base64.StdEncoding.DecodeString(f[2])
		ok(t, err)
		if f[1] == name && len(raw) == 4+sigSize {
			dropped++
			continue
		}
		kept = append(kept, l)
	}
	return []byte(text + "\n\n" + strings.Join(kept, "")), dropped
}

// TestCheckpointLogLineRemoved: the kt client refuses a checkpoint whose
// note lacks either of the log's two signature lines (docs/spec/tlog.md
// §Log signatures: the Ed25519 line that standard verifiers check, and
// the ML-DSA-65 line), in a lookup and in a consistency response, from a
// trusted checkpoint and at bootstrap, as the checkpoint's error
// (tlog.ErrBadSignature), not a proof error, with the state unchanged.
func TestCheckpointLogLineRemoved(t *testing.T) {
	w := newWorld(t, 90)
	c := w.client(t)
	must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(2)))
	must(w.d.PublishEpoch(at(3)))
	for _, tc := range []struct {
		name    string
		sigSize int
	}{{"ML-DSA-65 log line", mldsa65.SignatureSize}, {"Ed25519 log line", 64}} {
		t.Run(tc.name, func(t *testing.T) {
			for _, base := range []struct {
				name   string
				client *kt.Client
			}{{"trusted checkpoint", c}, {"bootstrap", w.client(t)}} {
				cl := base.client
				r := must(w.d.Lookup(w.alice, cl.TreeSize()))
				note, n := dropSigLines(t, r.Checkpoint.Note, w.d.Origin, tc.sigSize)
				if n != 1 {
					t.Fatalf("%s: %d lines dropped, want 1", base.name, n)
				}
				r.Checkpoint.Note = note
				before := state(t, cl)
				_, err := cl.VerifyLookup(w.tenant, w.alice, r, at(4))
				var ke *kt.KTProofError
				if !errors.Is(err, tlog.ErrBadSignature) || errors.As(err, &ke) {
					t.Fatalf("%s: lookup: %v, want tlog.ErrBadSignature", base.name, err)
				}
				sameState(t, cl, before)
				_, err = cl.UpdateCheckpoint(&kt.ConsistencyResponse{Checkpoint: r.Checkpoint}, at(4))
				if !errors.Is(err, tlog.ErrBadSignature) {
					t.Fatalf("%s: consistency: %v, want tlog.ErrBadSignature", base.name, err)
				}
				sameState(t, cl, before)
			}
		})
	}
	// Control: the note as served is accepted.
	must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, c.TreeSize())), at(4)))
}

// TestEd25519OnlyCosignaturesForged: the operator, holding the log key,
// makes a second view of epoch 1 (as in TestT27SplitView), and the
// attacker also holds every witness's Ed25519 key but not its ML-DSA-44
// key (a quantum attacker, or a leak of the classical keys). Every
// witness has both keys in the trust bundle, so an Ed25519 cosignature
// without its ML-DSA-44 twin does not count (docs/spec/tlog.md
// §Cosignatures): the kt client refuses the view with ErrNoQuorum, in a
// lookup and in a consistency response, and its state is unchanged. With
// the ML-DSA-44 keys too, a client would accept it: the rule, not the
// view, is what refuses it.
func TestEd25519OnlyCosignaturesForged(t *testing.T) {
	w := newWorld(t, 91)
	victim, control := w.client(t), w.client(t)
	real := must(w.d.Lookup(w.alice, 0))
	must(victim.VerifyLookup(w.tenant, w.alice, real, at(2)))
	must(control.VerifyLookup(w.tenant, w.alice, real, at(2)))

	ctx := context.Background()
	alt := must(tlog.NewTree(ctx, tlog.NewMemoryNodeStore(), 0))
	e1 := kt.EpochEntry{Epoch: 1, Time: at(3), MapRoot: real.Proof.Entry.MapRoot}
	must(alt.Append(ctx, must(real.Proof.Entry.Marshal()), must(e1.Marshal())))
	cp := &tlog.Checkpoint{Origin: w.d.Origin, Size: 2, Root: must(alt.Root(ctx, 2))}
	signed := must(tlog.SignCheckpoint(cp, w.d.LogKey))
	cosigned := func(types ...tlog.CosignatureType) *kt.LookupResponse {
		note := signed
		for _, ks := range w.d.WitnessKeys {
			for _, k := range ks {
				for _, typ := range types {
					if k.Public().Type() == typ {
						cs := must(tlog.CosignCheckpoint(k, cp, at(3)))
						note = must(tlog.AddCosignatures(note, must(cs.Marshal())))
					}
				}
			}
		}
		r := cloneLookup(t, real)
		r.Checkpoint = kt.CheckpointUpdate{BaseSize: 1, Note: note, Consistency: must(alt.ConsistencyProof(ctx, 1, 2))}
		r.Proof.Entry = e1
		r.Proof.Inclusion = must(alt.InclusionProof(ctx, 1, 2))
		ok(t, r.Proof.Anchor(&r.Checkpoint))
		return r
	}

	r := cosigned(tlog.CosignatureEd25519)
	if len(w.d.WitnessKeys) < 2 || len(w.d.WitnessKeys[0]) != 2 {
		t.Fatal("the witnesses do not have an Ed25519 and an ML-DSA-44 key each")
	}
	before := state(t, victim)
	if _, err := victim.VerifyLookup(w.tenant, w.alice, r, at(4)); !errors.Is(err, tlog.ErrNoQuorum) {
		t.Fatalf("lookup: %v, want ErrNoQuorum", err)
	}
	sameState(t, victim, before)
	if _, err := victim.UpdateCheckpoint(&kt.ConsistencyResponse{Checkpoint: r.Checkpoint}, at(4)); !errors.Is(err, tlog.ErrNoQuorum) {
		t.Fatalf("consistency: %v, want ErrNoQuorum", err)
	}
	sameState(t, victim, before)

	// Control: with both keys of every witness, the same view passes.
	must(control.VerifyLookup(w.tenant, w.alice, cosigned(tlog.CosignatureEd25519, tlog.CosignatureMLDSA44), at(4)))
}

// TestTimeRollbackThroughClient: the kt client enforces crypto/tlog's
// monotonic signed time (docs/spec/tlog.md §Client verification, step
// 5). Once it trusts a checkpoint witnessed at W, a newer, consistent
// checkpoint whose quorum cosigned before W is refused with
// ErrTimeRollback, with the local clock well ahead of both (so neither
// the clock check nor freshness decides), in a lookup and in a
// consistency response; the same checkpoint cosigned after W is
// accepted.
func TestTimeRollbackThroughClient(t *testing.T) {
	w := newWorld(t, 92)
	c := w.client(t)
	must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(2)))
	// The witnesses cosign the same tree again at at(10): W = at(10).
	ok(t, w.d.Cosign(at(10)))
	must(c.UpdateCheckpoint(must(w.d.Consistency(c.TreeSize())), at(10)))
	if !c.Floor().Equal(at(10)) { // F := max(F, W)
		t.Fatalf("time floor %v, want the witnessed time %v", c.Floor(), at(10))
	}
	must(w.d.PublishEpoch(at(11)))
	served := must(w.d.Lookup(w.alice, c.TreeSize()))
	text, _, _ := strings.Cut(string(served.Checkpoint.Note), "\n\n")
	cp := must(tlog.ParseCheckpoint([]byte(text + "\n")))
	// The newer checkpoint, cosigned by every witness at cosignedAt.
	cosignedAt := func(ts time.Time) *kt.LookupResponse {
		note := must(tlog.SignCheckpoint(cp, w.d.LogKey))
		for _, ks := range w.d.WitnessKeys {
			for _, k := range ks {
				cs := must(tlog.CosignCheckpoint(k, cp, ts))
				note = must(tlog.AddCosignatures(note, must(cs.Marshal())))
			}
		}
		r := cloneLookup(t, served)
		r.Checkpoint.Note = note
		return r
	}
	now := at(12)
	old := cosignedAt(at(9))
	before := state(t, c)
	if _, err := c.VerifyLookup(w.tenant, w.alice, old, now); !errors.Is(err, tlog.ErrTimeRollback) {
		t.Fatalf("lookup: %v, want ErrTimeRollback", err)
	}
	sameState(t, c, before)
	if _, err := c.UpdateCheckpoint(&kt.ConsistencyResponse{Checkpoint: old.Checkpoint}, now); !errors.Is(err, tlog.ErrTimeRollback) {
		t.Fatalf("consistency: %v, want ErrTimeRollback", err)
	}
	sameState(t, c, before)
	// Control: cosigned at W or later, it is accepted.
	must(c.VerifyLookup(w.tenant, w.alice, cosignedAt(at(10)), now))
}
