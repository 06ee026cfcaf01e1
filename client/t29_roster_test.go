package client_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net/http"
	"testing"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/clienttest"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// TestT29ForgedRecoveryApprovalsSDK (adversarial case T29, against an
// operator holding the CA key): the admins recover a device for Alice
// (M-of-N, the recovery path of Enrol's ApprovalRequiredError). Her first
// device, which monitors with the admin rosters it verified from the
// directory, reports a genuine recovery as "device recovered by admins";
// a recovery whose approvals the operator rewrote and the CA re-signed (a
// single admin, the same admin twice, an admin signature changed) as
// client.AlertRecoveryApprovalsInvalid instead. The rosters are kept in
// the device's state: a restarted device checks too.
func TestT29ForgedRecoveryApprovalsSDK(t *testing.T) {
	ctx := context.Background()
	run := func(t *testing.T, forge func([]*org.Approval) []*org.Approval, restart bool) ([]client.Alert, client.DeviceID) {
		w := newWorld(t)
		mon := w.a1
		alerts, err := mon.Monitor(ctx) // verifies the roster, and the baseline
		ok(t, err)
		if len(alerts) != 0 {
			t.Fatalf("alerts for approved changes: %+v", alerts)
		}
		if restart {
			w.a1.Close()
			c, err := client.Open(ctx, w.a1.cfg, w.a1.st)
			ok(t, err)
			defer c.Close()
			mon = &device{Client: c, cfg: w.a1.cfg, st: w.a1.st}
		}
		st := clienttest.NewStore()
		code := w.s.IssueCode(w.alice)
		_, err = client.Enrol(ctx, w.s.Config(), st, code)
		var are *client.ApprovalRequiredError
		if !errors.As(err, &are) {
			t.Fatalf("enrolment without approval: %v", err)
		}
		w.s.ApproveAsAdmins(w.alice, are.Request)
		a3, err := client.Enrol(ctx, w.s.Config(), st, code)
		ok(t, err)
		defer a3.Close()
		if forge != nil {
			w.s.ForgeApprovals(w.alice, forge)
		}
		w.s.Publish()
		alerts, err = mon.Monitor(ctx)
		ok(t, err)
		return alerts, a3.Self().Device
	}
	want := func(t *testing.T, alerts []client.Alert, dev client.DeviceID, kind string) {
		t.Helper()
		if len(alerts) != 1 || alerts[0].Device != dev || alerts[0].Kind != kind {
			t.Fatalf("alerts %+v, want one %q for %s", alerts, kind, dev)
		}
	}

	t.Run("M-of-N recovery", func(t *testing.T) {
		alerts, dev := run(t, nil, false)
		want(t, alerts, dev, "device recovered by admins")
	})
	forgeries := map[string]func([]*org.Approval) []*org.Approval{
		"one admin":        func(as []*org.Approval) []*org.Approval { return as[:1] },
		"same admin twice": func(as []*org.Approval) []*org.Approval { return []*org.Approval{as[0], as[0]} },
		"admin signature changed": func(as []*org.Approval) []*org.Approval {
			as[1].Signature = bytes.Clone(as[1].Signature)
			as[1].Signature[0] ^= 1
			return as
		},
	}
	for name, forge := range forgeries {
		t.Run(name, func(t *testing.T) {
			alerts, dev := run(t, forge, false)
			want(t, alerts, dev, client.AlertRecoveryApprovalsInvalid)
		})
	}
	t.Run("one admin, restarted device", func(t *testing.T) {
		alerts, dev := run(t, forgeries["one admin"], true)
		want(t, alerts, dev, client.AlertRecoveryApprovalsInvalid)
	})
}

// TestT29RosterWithheld: a directory that alters the admin roster's
// history (a byte flipped, or its records withheld) cannot make Monitor
// skip the approval check: Monitor fails and the device's state is
// unchanged; the untampered answer then verifies.
func TestT29RosterWithheld(t *testing.T) {
	ctx := context.Background()
	s := clienttest.New(t)
	tp := &tamperer{}
	c := enrol(t, s, s.AddUser("Carol"), nil, func(cfg *client.Config) { cfg.HTTP = &http.Client{Transport: tp} })
	s.Publish()
	edits := map[string]func([]byte) []byte{
		"byte flipped": func(b []byte) []byte {
			b = bytes.Clone(b)
			b[len(b)/2] ^= 0x01
			return b
		},
		"records withheld": func(b []byte) []byte {
			r, err := kt.ParseHistoryResponse(b)
			if err != nil || len(r.Records) == 0 {
				t.Errorf("history to withhold: %v, %d records", err, len(r.Records))
				return b
			}
			r.Records, r.RecordProof = nil, nil
			out, err := r.Marshal()
			if err != nil {
				t.Errorf("re-encoding the history: %v", err)
				return b
			}
			return out
		},
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			before := c.st.Snapshot()
			tp.set("/org-history/"+org.OrgLabelAdminRoster, edit)
			if alerts, err := c.Monitor(ctx); err == nil {
				t.Fatalf("monitoring with a tampered admin roster: %+v", alerts)
			}
			tp.set("", nil)
			if after := c.st.Snapshot(); !maps.Equal(before, after) {
				t.Fatal("a failed Monitor changed the device's state")
			}
		})
	}
	_, err := c.Monitor(ctx)
	ok(t, err)
}
