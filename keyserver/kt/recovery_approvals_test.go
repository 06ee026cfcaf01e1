package kt_test

import (
	"bytes"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// TestT29ForgedRecoveryApprovals is T29 against an operator that holds the
// CA key: it publishes a device_recovered entry for alice, signed by the
// CA, whose admin approvals dual control never produced (a changed
// signature; a single admin below the roster's threshold). Alice's device,
// which passes the admin roster it verified as Expected.Rosters, raises
// AlertRecoveryApprovalsInvalid instead of the legitimate-looking
// AlertDeviceRecovered (docs/spec/directory.md §Monitoring rules). A real
// M-of-N recovery raises AlertDeviceRecovered only, and so does any
// recovery for a device that passes no roster.
func TestT29ForgedRecoveryApprovals(t *testing.T) {
	// run recovers a device for alice with the roster's threshold of
	// admins, lets forge rewrite the recovery entry's approvals (the
	// entry then re-signed by the CA), publishes, and returns the alerts of
	// alice's device a1, monitoring with rosters.
	run := func(t *testing.T, forge func([]*org.Approval) []*org.Approval, rosters bool) (*kt.MonitorResult, org.DeviceID) {
		w := newWorld(t, 2929)
		c := w.client(t)
		roster := w.d.Tenant.Roster()
		exp := kt.Expected{Self: w.a1.ID}
		if rosters {
			exp.Rosters = []*org.AdminRoster{roster}
		}
		wantAlerts(t, monitor(t, w, c, w.alice, exp, 2))
		dev := must(w.d.Recover(w.alice, roster.Threshold, at(3)))
		if forge != nil {
			// A copy: the tenant's own value stays as it is.
			v := must(org.ParseUserValue(must(must(w.d.Tenant.UserValue(w.alice)).Marshal())))
			e := v.Entries[len(v.Entries)-1]
			if _, isRec := e.Action.(*org.DeviceRecovered); !isRec {
				t.Fatalf("last entry %T", e.Action)
			}
			e.Approvals = forge(e.Approvals)
			enc := must(e.Marshal())
			body := enc[:len(enc)-org.SignatureSize]
			e.Signature = must(w.d.CA.Sign(append([]byte("moat/v1/org/timeline-entry\x00"), body...)))
			ok(t, e.Verify(w.d.CA.Public(), w.tenant, w.alice))
			v.Head.Hash = must(e.Hash())
			w.d.Inject(org.Label{User: w.alice}, must(v.Marshal()))
		}
		must(w.d.PublishEpoch(at(4)))
		return monitor(t, w, c, w.alice, exp, 5), dev.ID
	}

	t.Run("M-of-N recovery", func(t *testing.T) {
		r, _ := run(t, nil, true)
		wantAlerts(t, r, kt.AlertDeviceRecovered)
	})
	forgeries := map[string]func([]*org.Approval) []*org.Approval{
		"admin signature changed": func(as []*org.Approval) []*org.Approval {
			as[1].Signature = bytes.Clone(as[1].Signature)
			as[1].Signature[0] ^= 1
			return as
		},
		"one admin":        func(as []*org.Approval) []*org.Approval { return as[:1] },
		"same admin twice": func(as []*org.Approval) []*org.Approval { return []*org.Approval{as[0], as[0]} },
	}
	for name, forge := range forgeries {
		t.Run(name, func(t *testing.T) {
			r, dev := run(t, forge, true)
			wantAlerts(t, r, kt.AlertRecoveryApprovalsInvalid)
			a := r.Alerts[0]
			if a.Device != dev || a.Entry == nil || a.Certificate == nil || a.Certificate.Device != dev || a.Kind.Informational() {
				t.Fatalf("alert %v", a)
			}
			// Without a roster the forgery looks like a recovery.
			r, _ = run(t, forge, false)
			wantAlerts(t, r, kt.AlertDeviceRecovered)
		})
	}
	t.Run("device added with a forged admin approval", func(t *testing.T) {
		// a1 approves a second device; the operator adds an admin
		// approval that no admin signed and re-signs the entry.
		w := newWorld(t, 2930)
		c := w.client(t)
		exp := kt.Expected{Self: w.a1.ID, Rosters: []*org.AdminRoster{w.d.Tenant.Roster()}}
		wantAlerts(t, monitor(t, w, c, w.alice, exp, 2))
		a2 := must(w.d.Enrol(w.alice, w.a1, at(3)))
		v := must(org.ParseUserValue(must(must(w.d.Tenant.UserValue(w.alice)).Marshal())))
		e := v.Entries[len(v.Entries)-1]
		if _, isAdd := e.Action.(*org.DeviceAdded); !isAdd {
			t.Fatalf("last entry %T", e.Action)
		}
		sig := bytes.Repeat([]byte{0x5a}, org.SignatureSize)
		e.Approvals = append(e.Approvals, &org.Approval{Kind: org.ApproverAdmin, Signer: w.d.Admins[0].Public().ID(), Signature: sig})
		enc := must(e.Marshal())
		e.Signature = must(w.d.CA.Sign(append([]byte("moat/v1/org/timeline-entry\x00"), enc[:len(enc)-org.SignatureSize]...)))
		v.Head.Hash = must(e.Hash())
		w.d.Inject(org.Label{User: w.alice}, must(v.Marshal()))
		must(w.d.PublishEpoch(at(4)))
		r := monitor(t, w, c, w.alice, exp, 5)
		wantAlerts(t, r, kt.AlertRecoveryApprovalsInvalid)
		if r.Alerts[0].Device != a2.ID {
			t.Fatalf("alert %v", r.Alerts[0])
		}
	})
}
