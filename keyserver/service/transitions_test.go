package service_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
)

// rotateOverHTTP rotates the log key or the CA (op rotate-log-key or
// rotate-ca) with the approvals of admins 0 and 1, and publishes the epoch
// that publishes the new bundle and the one after.
func (w *world) rotateOverHTTP(op string) {
	w.t.Helper()
	p := w.propose(op, 0)
	must(w.approveRotation(op, 0, p))
	if out := must(w.approveRotation(op, 1, p)); !out.Applied {
		w.t.Fatalf("%s not applied", op)
	}
	w.publish()
	w.publish()
}

// setWitnessesOverHTTP replaces the witness set by ws with the approvals
// of admins 0 and 1, and publishes two epochs.
func (w *world) setWitnessesOverHTTP(ws org.WitnessSet) {
	w.t.Helper()
	prop := service.ProposeWitnesses(w.ten().TrustBundle(), ws, w.clk.Now())
	enc := must(service.MarshalProposal(prop))
	for i := range 2 {
		c := w.api()
		c.Admin = w.admins[i]
		ap := must(org.ApproveTrustBundle(w.admins[i], prop))
		ok(w.t, c.AdminOp(context.Background(), "set-witnesses", service.TrustBundleApproveRequest{Bundle: enc, Approval: must(ap.Marshal())}, nil))
	}
	w.publish()
	w.publish()
}

// transitionsProxy serves the directory at upstream, except that its
// transitions answers go through rewrite, as a malicious directory's.
func transitionsProxy(t *testing.T, upstream string, rewrite func(*kt.TransitionsResponse)) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		req := must(http.NewRequestWithContext(r.Context(), r.Method, upstream+r.URL.RequestURI(), r.Body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body := must(io.ReadAll(resp.Body))
		if resp.StatusCode == http.StatusOK && strings.HasSuffix(r.URL.Path, "/transitions") {
			tr := must(kt.ParseTransitionsResponse(body))
			rewrite(tr)
			body = must(tr.Marshal())
		}
		rw.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		rw.WriteHeader(resp.StatusCode)
		rw.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// withhold returns a rewrite that keeps only the transitions keep, and
// the latest checkpoint proven from where they end, which the directory
// at upstream serves.
func withhold(t *testing.T, upstream string, tenant org.TenantID, keep ...int) func(*kt.TransitionsResponse) {
	return func(r *kt.TransitionsResponse) {
		var trs []*kt.Transition
		walk := r.BaseSize
		for _, i := range keep {
			trs = append(trs, r.Transitions[i])
			walk = max(walk, noteCheckpoint(t, r.Transitions[i].Note).Size)
		}
		c := &service.Client{BaseURL: upstream, Tenant: tenant}
		r.Transitions, r.Latest = trs, must(c.Consistency(context.Background(), walk)).Checkpoint
	}
}

// TestOfflineClientFollowsRotations: a device saved its state before a log
// key rotation, a change to a disjoint witness set and a CA rotation, all
// through the admin API, with a restart in between; the state restores
// with the bundle it was saved with, the latest checkpoint does not verify
// under it, and the device catches up in one call from the transitions the
// directory kept (docs/spec/directory-api.md §Transitions), then verifies
// lookups and its user's whole history. A directory that withholds a
// transition, forges one, or serves a substituted bundle is refused with
// a typed error, and the device's state does not change.
func TestOfflineClientFollowsRotations(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, worldOptions{seed: 46, badger: true, extra: 2})
	alice := w.addUser("Alice")
	a1 := w.mustEnrol(alice)
	w.publish()
	must(w.lookup(a1, alice))
	first := a1.kt.Bundle()
	saved := must(a1.kt.MarshalState())

	w.rotateOverHTTP("rotate-log-key")
	w.setWitnessesOverHTTP(org.WitnessSet{Quorum: 2, Witnesses: []org.WitnessKey{w.witnesses[3].key(), w.witnesses[4].key()}})
	w.restartBadger()
	w.rotateOverHTTP("rotate-ca")
	w.publish()
	cur := w.ten().TrustBundle()
	if cur.Sequence != 4 {
		t.Fatalf("bundle %d", cur.Sequence)
	}

	offline := func() *kt.Client {
		t.Helper()
		c, err := kt.RestoreClient(kt.Config{Bundle: first, MaxAge: maxAge}, saved)
		if err != nil {
			t.Fatalf("restoring the saved state: %v", err)
		}
		return c
	}
	c := offline()
	if _, err := c.VerifyLookup(w.tenant, alice, must(a1.api.Lookup(ctx, alice, c.TreeSize())), w.clk.Now()); !errors.Is(err, tlog.ErrBadSignature) {
		t.Fatalf("the latest checkpoint under the first bundle: %v", err)
	}

	// The transitions: each checkpoint cosigned by a quorum of the
	// witnesses in force before it.
	resp := must(w.api().Transitions(ctx, first.Sequence, c.TreeSize()))
	if len(resp.Transitions) != 3 || resp.Transitions[2].Rotation == nil {
		t.Fatalf("%d transitions", len(resp.Transitions))
	}
	for i, tr := range resp.Transitions {
		if cs := cosigners(tr.Note); len(cs) < 2 {
			t.Fatalf("transition %d cosigned by %v", i, cs)
		}
	}
	// Refusals, each leaving the state as it was.
	refused := func(name string, rewrite func(*kt.TransitionsResponse), want error) {
		t.Helper()
		srv := transitionsProxy(t, w.srv.URL, rewrite)
		api := &service.Client{BaseURL: srv.URL, Tenant: w.tenant}
		before := must(c.MarshalState())
		_, err := c.FollowTransitions(must(api.Transitions(ctx, c.Bundle().Sequence, c.TreeSize())), w.clk.Now())
		if !errors.Is(err, want) {
			t.Fatalf("%s: got %v, want %v", name, err, want)
		}
		if !bytes.Equal(before, must(c.MarshalState())) {
			t.Fatalf("%s: the refused transitions changed the state", name)
		}
	}
	refused("log key transition withheld", withhold(t, w.srv.URL, w.tenant, 1, 2), kt.ErrBundleRefused)
	refused("witness transition withheld", withhold(t, w.srv.URL, w.tenant, 0, 2), kt.ErrBundleRefused)
	refused("CA transition withheld", withhold(t, w.srv.URL, w.tenant, 0, 1), kt.ErrTransitionsIncomplete)
	refused("every transition withheld", withhold(t, w.srv.URL, w.tenant), kt.ErrTransitionsIncomplete)
	// A transition checkpoint the operator signs with a key of its own,
	// for the same tree: not the log key the device holds.
	rogue := must(keys.GenerateLogKey(w.rnd))
	refused("forged transition checkpoint", func(r *kt.TransitionsResponse) {
		cp := noteCheckpoint(t, r.Transitions[0].Note)
		r.Transitions[0].Note = must(tlog.SignCheckpoint(cp, rogue))
	}, kt.ErrBundleRefused)
	// The new log key's bundle replaced by the one after: not what the
	// map holds at that epoch.
	refused("substituted bundle", func(r *kt.TransitionsResponse) {
		r.Transitions[0].BundleRecord.Value = r.Transitions[1].BundleRecord.Value
	}, kt.ErrProof)

	// The whole walk.
	nb, err := c.FollowTransitions(resp, w.clk.Now())
	if err != nil {
		t.Fatalf("following the transitions: %v", err)
	}
	if nb.Sequence != cur.Sequence || !nb.CA.Equal(cur.CA) || !nb.Log.Equal(cur.Log) || c.TreeSize() != w.ten().Head().LogSize {
		t.Fatalf("pinned to bundle %d at size %d", nb.Sequence, c.TreeSize())
	}
	res, err := c.VerifyLookup(w.tenant, alice, must(a1.api.Lookup(ctx, alice, c.TreeSize())), w.clk.Now())
	if err != nil {
		t.Fatalf("lookup after catching up: %v", err)
	}
	if len(res.Devices) != 1 || !res.Devices[0].Identity.Signing.Equal(a1.cert.Identity.Signing) {
		t.Fatal("alice's device")
	}
	if _, err := c.VerifyHistory(w.tenant, alice, kt.Position{}, must(a1.api.History(ctx, alice, 0, c.TreeSize())), w.clk.Now()); err != nil {
		t.Fatalf("alice's history across the CA rotation: %v", err)
	}
	// Its state restores with the new bundle, and keeps up.
	rc := must(kt.RestoreClient(kt.Config{Bundle: nb, MaxAge: maxAge}, must(c.MarshalState())))
	w.publish()
	must(rc.VerifyLookup(w.tenant, alice, must(a1.api.Lookup(ctx, alice, rc.TreeSize())), w.clk.Now()))

	// The transitions are kept across a restart, and a device that
	// followed everything gets none.
	w.restartBadger()
	if r := must(w.api().Transitions(ctx, first.Sequence, 0)); len(r.Transitions) != 3 {
		t.Fatalf("%d transitions after a restart", len(r.Transitions))
	}
	c2 := offline()
	must(c2.FollowTransitions(must(w.api().Transitions(ctx, first.Sequence, c2.TreeSize())), w.clk.Now()))
	if r := must(w.api().Transitions(ctx, nb.Sequence, rc.TreeSize())); len(r.Transitions) != 0 {
		t.Fatalf("%d transitions after the current bundle", len(r.Transitions))
	}
	// Strict parameters; a client ahead of the served tree is 409.
	base := w.srv.URL + "/v1/" + w.tenant.String() + "/transitions"
	for q, want := range map[string]int{"?after=01": http.StatusBadRequest, "?after=x": http.StatusBadRequest,
		"?size=-1": http.StatusBadRequest, "?size=1000000": http.StatusConflict, "?after=1&size=3": http.StatusOK} {
		if code, body := rawRequest(t, must(http.NewRequest(http.MethodGet, base+q, nil))); code != want {
			t.Errorf("%s: status %d (%s), want %d", q, code, body, want)
		}
	}
}

// TestTransitionWaitsForCosigning: the epoch after one that published a
// new bundle is not published until a witness quorum has cosigned that
// epoch's checkpoint, which the service keeps for devices that were
// offline; once the witnesses are back, it is cosigned first, kept with
// its cosignatures, and the next epoch follows.
func TestTransitionWaitsForCosigning(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, worldOptions{seed: 47})
	alice := w.addUser("Alice")
	a1 := w.mustEnrol(alice)
	w.publish()
	first := a1.kt.Bundle()
	saved := must(a1.kt.MarshalState())
	p := w.propose("rotate-log-key", 0)
	must(w.approveRotation("rotate-log-key", 0, p))
	must(w.approveRotation("rotate-log-key", 1, p))
	for _, tw := range w.witnesses {
		tw.setDown(true)
	}
	w.clk.Advance(time.Minute)
	ep := must(w.ten().PublishEpoch(ctx, w.clk.Now()))
	if ep.Cosigned {
		t.Fatal("cosigned with the witnesses down")
	}
	w.clk.Advance(time.Minute)
	if _, err := w.ten().PublishEpoch(ctx, w.clk.Now()); err == nil || !strings.Contains(err.Error(), "not cosigned yet") {
		t.Fatalf("an epoch after an uncosigned transition: %v", err)
	}
	if h := w.ten().Head(); h.Epoch != ep.Entry.Epoch {
		t.Fatalf("head at epoch %d", h.Epoch)
	}
	wantStatus(t, w.api().AdminOp(ctx, "publish", nil, nil), http.StatusServiceUnavailable)
	for _, tw := range w.witnesses {
		tw.setDown(false)
	}
	next := w.publish()
	if next.Entry.Epoch != ep.Entry.Epoch+1 {
		t.Fatalf("epoch %d", next.Entry.Epoch)
	}
	r := must(w.api().Transitions(ctx, first.Sequence, 0))
	if len(r.Transitions) != 1 || len(cosigners(r.Transitions[0].Note)) < 2 {
		t.Fatal("the transition is not kept cosigned")
	}
	c := must(kt.RestoreClient(kt.Config{Bundle: first, MaxAge: maxAge}, saved))
	if _, err := c.FollowTransitions(must(w.api().Transitions(ctx, first.Sequence, c.TreeSize())), w.clk.Now()); err != nil {
		t.Fatalf("following: %v", err)
	}
}
