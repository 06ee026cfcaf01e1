package service_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/keyserver/store"
)

// lodgedCount returns how many lodged records the world's store holds
// for its tenant at the world's time.
func (w *world) lodgedCount() int {
	n := 0
	ok(w.t, w.st.LodgedRecords(context.Background(), w.tenant, w.clk.Now(), func(store.LodgedKey, []byte, time.Time) error {
		n++
		return nil
	}))
	return n
}

// approveRequest lodges admin i's approval of adding the device of req to
// user (admin/approve) and returns the approvals counted.
func (w *world) approveRequest(i int, user org.UserID, req *org.EnrolmentRequest) (int, error) {
	ap := must(org.ApproveByAdmin(w.admins[i], user, req))
	c := w.api()
	c.Admin = w.admins[i]
	var out struct {
		Approvals int `json:"approvals"`
	}
	err := c.AdminOp(context.Background(), "approve", service.ApproveRequest{
		User: user.String(), Request: must(req.Marshal()), Approval: must(ap.Marshal()),
	}, &out)
	return out.Approvals, err
}

// TestLodgedApprovalsSurviveCrash: approvals the directory acknowledged
// holding survive a crash (badger: the files a SIGKILL leaves; memstore:
// the same store under a new service), so that no admin approves again:
// an admin approval of a lost-device recovery, of a witness set change,
// and of a log key rotation, whose proposal is the same after the crash.
// The restored approvals count (approving again is 409), the second
// admin's approval completes each operation, and the records are deleted
// once used. Approvals lodged longer ago than the code lifetime are not
// restored.
func TestLodgedApprovalsSurviveCrash(t *testing.T) {
	for _, badger := range []bool{false, true} {
		t.Run(fmt.Sprintf("badger=%v", badger), func(t *testing.T) {
			ctx := context.Background()
			w := newWorld(t, worldOptions{seed: 120, badger: badger})
			alice := w.addUser("Alice")
			w.mustEnrol(alice)
			bob := w.mustEnrol(w.addUser("Bob"))
			w.publish()

			// Lost-device recovery.
			d := w.newDeviceKeys(alice)
			d.code = w.issueCode(alice)
			req := must(org.NewEnrolmentRequest(d.code, d.id, d.mls))
			if n, err := w.approveRequest(0, alice, req); err != nil || n != 1 {
				t.Fatalf("first approval: %d, %v", n, err)
			}
			// Witness set change.
			cur := w.ten().TrustBundle()
			ws := org.WitnessSet{Quorum: 2, Witnesses: []org.WitnessKey{w.witnesses[1].key(), w.witnesses[0].key()}}
			prop := service.ProposeWitnesses(cur, ws, w.clk.Now())
			enc := must(service.MarshalProposal(prop))
			setWitnesses := func(i int) (*service.TrustBundleApproveResponse, error) {
				c := w.api()
				c.Admin = w.admins[i]
				ap := must(org.ApproveTrustBundle(w.admins[i], prop))
				var out service.TrustBundleApproveResponse
				err := c.AdminOp(ctx, "set-witnesses", service.TrustBundleApproveRequest{Bundle: enc, Approval: must(ap.Marshal())}, &out)
				return &out, err
			}
			if out, err := setWitnesses(0); err != nil || out.Approvals != 1 {
				t.Fatalf("first witness-set approval: %+v, %v", out, err)
			}
			if n := w.lodgedCount(); n != 2 {
				t.Fatalf("%d lodged records, want 2", n)
			}

			w.crash()

			// Restored: approving again is refused.
			if _, err := w.approveRequest(0, alice, req); statusOf(err) != http.StatusConflict {
				t.Fatalf("approving the request again after the crash: %v", err)
			}
			if _, err := setWitnesses(0); statusOf(err) != http.StatusConflict {
				t.Fatalf("approving the witness set again after the crash: %v", err)
			}
			if n, err := w.approveRequest(1, alice, req); err != nil || n != 2 {
				t.Fatalf("second approval: %d, %v", n, err)
			}
			if _, err := w.api().Enrol(ctx, d.code, req); err != nil {
				t.Fatalf("recovery with an approval lodged before the crash: %v", err)
			}
			out, err := setWitnesses(1)
			if err != nil || !out.Applied || out.Sequence != cur.Sequence+1 {
				t.Fatalf("second witness-set approval: %+v, %v", out, err)
			}
			if n := w.lodgedCount(); n != 0 {
				t.Fatalf("%d lodged records left after both were used", n)
			}
			w.publish()
			lr := must(w.lookup(bob, alice))
			if len(lr.Devices) != 2 {
				t.Fatalf("alice has %d devices after the recovery, want 2", len(lr.Devices))
			}

			// Log key rotation: proposed and approved once before the
			// crash, the same proposal after it.
			op := "rotate-log-key"
			p := w.propose(op, 0)
			if a, err := w.approveRotation(op, 0, p); err != nil || a.Approvals != 1 || a.Applied {
				t.Fatalf("first rotation approval: %+v, %v", a, err)
			}
			w.crash()
			p2 := w.propose(op, 1)
			if string(p2.Bundle) != string(p.Bundle) || p2.Key != p.Key || p2.Approvals != 1 {
				t.Fatalf("proposal after the crash: key %s approvals %d, want key %s approvals 1", p2.Key, p2.Approvals, p.Key)
			}
			a, err := w.approveRotation(op, 1, p2)
			if err != nil || !a.Applied {
				t.Fatalf("second rotation approval: %+v, %v", a, err)
			}
			w.publish()
			if nb := w.ten().TrustBundle(); nb.Log.String() != p.Key {
				t.Fatal("the published bundle does not name the new log key")
			}
			w.publish() // signed by the new key
			if n := w.lodgedCount(); n != 0 {
				t.Fatalf("%d lodged records left after the rotation", n)
			}

			// Expiry: an approval older than the code lifetime is gone
			// after a crash, as it is without one.
			d2 := w.newDeviceKeys(alice)
			d2.code = w.issueCode(alice)
			req2 := must(org.NewEnrolmentRequest(d2.code, d2.id, d2.mls))
			if n, err := w.approveRequest(0, alice, req2); err != nil || n != 1 {
				t.Fatalf("approval to expire: %d, %v", n, err)
			}
			w.clk.Advance(org.DefaultMaxCodeLifetime + time.Minute)
			w.crash()
			if n := w.lodgedCount(); n != 0 {
				t.Fatalf("%d lodged records visible after they expired", n)
			}
			if n, err := w.approveRequest(0, alice, req2); err != nil || n != 1 {
				t.Fatalf("approving again after expiry: %d, %v", n, err)
			}
		})
	}
}

// TestLodgeFailureNotAcknowledged: an approval that cannot be made
// durable is answered 503 and not held: after the store recovers, the same
// admin's approval is accepted as the first; so is a key rotation's
// proposal or approval.
func TestLodgeFailureNotAcknowledged(t *testing.T) {
	fs := &failLodged{}
	w := newWorld(t, worldOptions{seed: 121, wrap: func(s store.DirectoryStore) store.DirectoryStore {
		fs.DirectoryStore = s
		return fs
	}})
	alice := w.addUser("Alice")
	w.mustEnrol(alice)
	w.publish()
	d := w.newDeviceKeys(alice)
	d.code = w.issueCode(alice)
	req := must(org.NewEnrolmentRequest(d.code, d.id, d.mls))
	fs.fail = true
	_, err := w.approveRequest(0, alice, req)
	wantStatus(t, err, http.StatusServiceUnavailable)
	fs.fail = false
	if n, err := w.approveRequest(0, alice, req); err != nil || n != 1 {
		t.Fatalf("approval after the failure: %d, %v (want 1: the failed one was not held)", n, err)
	}
	if n := w.lodgedCount(); n != 1 {
		t.Fatalf("%d lodged records", n)
	}
	// A rotation proposal or approval that cannot be lodged is refused
	// and not held either.
	op := "rotate-log-key"
	fs.fail = true
	c := w.api()
	wantStatus(t, c.AdminOp(context.Background(), op, nil, &service.RotationProposal{}), http.StatusServiceUnavailable)
	fs.fail = false
	p := w.propose(op, 0)
	fs.fail = true
	_, err = w.approveRotation(op, 0, p)
	wantStatus(t, err, http.StatusServiceUnavailable)
	fs.fail = false
	if p2 := w.propose(op, 1); p2.Key != p.Key || p2.Approvals != 0 {
		t.Fatalf("after a failed approval: key changed %v, %d approvals, want 0", p2.Key != p.Key, p2.Approvals)
	}
	if a, err := w.approveRotation(op, 0, p); err != nil || a.Approvals != 1 {
		t.Fatalf("approval after the failure: %+v, %v", a, err)
	}
}

// failLodged fails PutLodged while fail is set.
type failLodged struct {
	store.DirectoryStore
	fail bool
}

func (f *failLodged) PutLodged(ctx context.Context, id [16]byte, key store.LodgedKey, value []byte, expires, now time.Time) error {
	if f.fail {
		return fmt.Errorf("injected: %w", store.ErrClosed)
	}
	return f.DirectoryStore.PutLodged(ctx, id, key, value, expires, now)
}

// TestLodgedStaleRotationDropped: a key rotation lodged before a crash
// whose proposal another bundle change overtook is not restored: the
// record is deleted at the restart, and the next proposal names another
// key.
func TestLodgedStaleRotationDropped(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, worldOptions{seed: 123, badger: true})
	w.mustEnrol(w.addUser("Alice"))
	w.publish()
	op := "rotate-log-key"
	p := w.propose(op, 0)
	must(w.approveRotation(op, 0, p))
	// A witness set change takes the rotation's sequence.
	cur := w.ten().TrustBundle()
	prop := service.ProposeWitnesses(cur, org.WitnessSet{Quorum: 2, Witnesses: []org.WitnessKey{w.witnesses[0].key(), w.witnesses[1].key()}}, w.clk.Now())
	enc := must(service.MarshalProposal(prop))
	for i := range 2 {
		c := w.api()
		c.Admin = w.admins[i]
		ap := must(org.ApproveTrustBundle(w.admins[i], prop))
		ok(t, c.AdminOp(ctx, "set-witnesses", service.TrustBundleApproveRequest{Bundle: enc, Approval: must(ap.Marshal())}, nil))
	}
	if n := w.lodgedCount(); n != 1 {
		t.Fatalf("%d lodged records before the crash, want the rotation's", n)
	}
	w.crash()
	if n := w.lodgedCount(); n != 0 {
		t.Fatalf("%d lodged records after the restart, want the stale rotation dropped", n)
	}
	w.publish()
	if p2 := w.propose(op, 1); p2.Key == p.Key || p2.Approvals != 0 {
		t.Fatalf("proposal after the restart: same key %v, %d approvals", p2.Key == p.Key, p2.Approvals)
	}
}
