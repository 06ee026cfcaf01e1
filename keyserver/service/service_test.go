package service_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/keyserver/store"
)

func backends(t *testing.T, f func(t *testing.T, badger bool)) {
	t.Run("memstore", func(t *testing.T) { f(t, false) })
	t.Run("badgerstore", func(t *testing.T) { f(t, true) })
}

// TestLookupOverHTTP: a tenant is created (epoch 0), an admin adds users
// and issues a code over the admin API, a device enrols, epochs are
// published and cosigned by real witnesses over HTTP, and lookups,
// absence, org statements, history and consistency fetched over HTTP
// verify with kt's client against the trust bundle the device got at
// enrolment.
func TestLookupOverHTTP(t *testing.T) {
	backends(t, func(t *testing.T, badger bool) {
		w := newWorld(t, worldOptions{badger: badger, seed: 1})
		ctx := context.Background()
		if got := w.ten().Head(); got.Epoch != 0 || got.LogSize != 1 {
			t.Fatalf("new tenant head %+v", got)
		}
		alice, bob, carol := w.addUser("Alice"), w.addUser("Bob"), org.UserID{0xca}
		a1 := w.mustEnrol(alice)
		// Not published yet: the device may already sign lookups (its
		// certificate is the CA's), and alice is provably absent.
		_, err := w.lookup(a1, alice)
		if !errors.Is(err, kt.ErrNotFound) {
			t.Fatalf("lookup before the epoch: %v", err)
		}
		w.publish()

		// The trust bundle served matches the code's fingerprint.
		tb := must(w.api().TrustBundle(ctx))
		must(org.CheckTrustBundle(a1.code, tb))

		res := must(w.lookup(a1, alice))
		if len(res.Devices) != 1 || res.Devices[0].Device != a1.cert.Device {
			t.Fatalf("alice's devices: %+v", res.Devices)
		}
		res = must(w.lookup(a1, bob))
		if len(res.Devices) != 0 || res.Record.Version != 1 {
			t.Fatalf("bob: %+v", res)
		}
		resp := must(a1.api.Lookup(ctx, carol, a1.kt.TreeSize()))
		if _, err := a1.kt.VerifyAbsence(w.tenant, carol, resp, w.clk.Now()); err != nil {
			t.Fatalf("absence of carol: %v", err)
		}
		or := must(a1.api.LookupOrg(ctx, org.OrgLabelOrgChart, a1.kt.TreeSize()))
		chart := must(a1.kt.VerifyOrgLookup(org.OrgLabelOrgChart, or, w.clk.Now()))
		if n := len(chart.Statement.(*org.OrgChart).Members); n != 2 {
			t.Fatalf("org chart has %d members", n)
		}

		// A second device, approved by the first; history and monitoring.
		a2 := must(w.enrol(alice, func(req *org.EnrolmentRequest) []*org.Approval {
			return []*org.Approval{must(org.ApproveByDevice(a1.id.Signing, a1.cert.Device, alice, req))}
		}))
		w.publish()
		w.publish() // an empty epoch
		h := must(a1.api.History(ctx, alice, 0, a1.kt.TreeSize()))
		hr := must(a1.kt.VerifyHistory(w.tenant, alice, kt.Position{}, h, w.clk.Now()))
		if len(hr.Records) != 2 || len(hr.Devices) != 2 {
			t.Fatalf("history: %d records, %d devices", len(hr.Records), len(hr.Devices))
		}
		mon := must(a1.kt.Monitor(alice, kt.Expected{Self: a1.cert.Device}, must(a1.api.Monitor(ctx, alice, 0, 0, a1.kt.TreeSize())), w.clk.Now()))
		if len(mon.Alerts) != 0 {
			t.Fatalf("alerts for a device approved by an own device: %v", mon.Alerts)
		}
		// Since the latest version: no records, the same proof.
		h = must(a1.api.History(ctx, alice, 2, a1.kt.TreeSize()))
		if len(h.Records) != 0 {
			t.Fatal("history since the latest version has records")
		}
		_, err = a1.api.History(ctx, alice, 3, a1.kt.TreeSize())
		wantStatus(t, err, http.StatusBadRequest)

		// a2 bootstraps at the latest checkpoint; both clients follow
		// consistency proofs.
		must(w.lookup(a2, alice))
		for range 3 {
			w.publish()
		}
		for _, d := range []*device{a1, a2} {
			cr := must(d.api.Consistency(ctx, d.kt.TreeSize()))
			cp := must(d.kt.UpdateCheckpoint(cr, w.clk.Now()))
			if cp.Size != w.ten().Head().LogSize {
				t.Fatalf("consistency to %d, head %d", cp.Size, w.ten().Head().LogSize)
			}
		}
		// The checkpoint endpoint serves the cosigned note.
		note := must(w.api().Checkpoint(ctx))
		if cp := noteCheckpoint(t, note); cp.Size != w.ten().Head().LogSize || cp.Origin != w.origin {
			t.Fatalf("checkpoint %+v", cp)
		}
		// consistency?to= other than the served size.
		_, err = w.api().Consistency(ctx, 0)
		ok(t, err)
		req := must(http.NewRequest(http.MethodGet, w.srv.URL+"/v1/"+w.tenant.String()+"/consistency?from=1&to=2", nil))
		if code, _ := rawRequest(t, req); code != http.StatusConflict {
			t.Fatalf("consistency to an old size: %d", code)
		}
		// A client ahead of the served tree.
		_, err = a1.api.Lookup(ctx, alice, a1.kt.TreeSize()+5)
		wantStatus(t, err, http.StatusConflict)
	})
}

// TestRevokedDeviceDisappears: a revoked device leaves the value at the
// next epoch and can no longer sign lookups; the revocation is signed.
func TestRevokedDeviceDisappears(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 2})
	ctx := context.Background()
	alice, bob := w.addUser("Alice"), w.addUser("Bob")
	a1, b1 := w.mustEnrol(alice), w.mustEnrol(bob)
	w.publish()
	must(w.lookup(b1, alice))
	var rv service.RevokeDeviceResponse
	ok(t, w.api().AdminOp(ctx, "revoke-device", service.RevokeDeviceRequest{User: alice.String(), Device: a1.cert.Device.String(), Reason: "lost"}, &rv))
	r := must(org.ParseRevocation(rv.Revocation))
	ok(t, r.Verify(w.ten().TrustBundle().CA, w.tenant))
	_, err := w.lookup(a1, alice)
	wantStatus(t, err, http.StatusUnauthorized)
	w.publish()
	res := must(w.lookup(b1, alice))
	if len(res.Devices) != 0 {
		t.Fatal("revoked device still published")
	}
	// Listing shows bob's device only.
	var list service.ListResponse
	ok(t, w.api().AdminOp(ctx, "list", nil, &list))
	if len(list.Users) != 2 {
		t.Fatalf("list: %+v", list)
	}
	for _, u := range list.Users {
		want := 0
		if u.User == bob.String() {
			want = 1
		}
		if len(u.Devices) != want {
			t.Fatalf("list: %s has %d devices", u.DisplayName, len(u.Devices))
		}
	}
}

// TestDualControlOverHTTP: adding a device to a user who has one needs a
// device approval or M admin approvals; one admin's is refused (T31's
// dual control, through the API).
func TestDualControlOverHTTP(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 3})
	ctx := context.Background()
	alice := w.addUser("Alice")
	w.mustEnrol(alice)
	w.publish()
	_, err := w.enrol(alice, nil)
	wantStatus(t, err, http.StatusForbidden)

	// Recovery: a new code, a request, and admin approvals lodged with
	// admin/approve.
	d := w.newDeviceKeys(alice)
	d.code = w.issueCode(alice)
	req := must(org.NewEnrolmentRequest(d.code, d.id, d.mls))
	reqEnc := must(req.Marshal())
	approve := func(i int) error {
		ap := must(org.ApproveByAdmin(w.admins[i], alice, req))
		c := w.api()
		c.Admin = w.admins[i]
		return c.AdminOp(ctx, "approve", service.ApproveRequest{User: alice.String(), Request: reqEnc, Approval: must(ap.Marshal())}, nil)
	}
	ok(t, approve(0))
	// An admin cannot lodge another admin's approval.
	ap1 := must(org.ApproveByAdmin(w.admins[1], alice, req))
	err = w.api().AdminOp(ctx, "approve", service.ApproveRequest{User: alice.String(), Request: reqEnc, Approval: must(ap1.Marshal())}, nil)
	wantStatus(t, err, http.StatusForbidden)
	// One admin is not enough.
	_, err = w.api().Enrol(ctx, d.code, req)
	wantStatus(t, err, http.StatusForbidden)
	if !strings.Contains(err.Error(), "approval") {
		t.Fatalf("error %v", err)
	}
	ok(t, approve(1))
	res := must(w.api().Enrol(ctx, d.code, req))
	w.publish()
	b1 := w.mustEnrol(w.addUser("Bob"))
	w.publish()
	lr := must(w.lookup(b1, alice))
	if len(lr.Devices) != 2 || lr.Value.Entries[len(lr.Value.Entries)-1].Action.Kind() != org.ActionDeviceRecovered {
		t.Fatalf("recovered device: %+v (device %s)", lr.Value, res.Device)
	}
}

// TestCommitFailureKeepsPreviousEpoch: a commit that fails leaves the
// previous epoch served and the head unchanged; the admin changes made
// before it are kept and published by the next epoch.
func TestCommitFailureKeepsPreviousEpoch(t *testing.T) {
	var fs *failingStore
	w := newWorld(t, worldOptions{seed: 4, wrap: func(s store.DirectoryStore) store.DirectoryStore {
		fs = &failingStore{DirectoryStore: s}
		return fs
	}})
	ctx := context.Background()
	alice := w.addUser("Alice")
	a1 := w.mustEnrol(alice)
	w.publish()
	head := w.ten().Head()
	note, size := w.ten().ServedNote()
	bob := w.addUser("Bob")
	fs.fail = true
	w.clk.Advance(time.Minute)
	if _, err := w.ten().PublishEpoch(ctx, w.clk.Now()); !errors.Is(err, errInjected) {
		t.Fatalf("publish with a failing store: %v", err)
	}
	fs.fail = false
	if got := w.ten().Head(); got.Epoch != head.Epoch || got.LogSize != head.LogSize {
		t.Fatalf("head moved: %+v", got)
	}
	if n, s := w.ten().ServedNote(); s != size || string(n) != string(note) {
		t.Fatal("served checkpoint changed")
	}
	must(w.lookup(a1, alice))
	// Bob, added before the failure, is published by the next epoch.
	ep := w.publish()
	if ep.Entry.Epoch != head.Epoch+1 {
		t.Fatalf("next epoch %d", ep.Entry.Epoch)
	}
	res := must(w.lookup(a1, bob))
	if res.Record.Epoch != ep.Entry.Epoch {
		t.Fatal("bob not published")
	}
}

var errInjected = errors.New("injected commit failure")

type failingStore struct {
	store.DirectoryStore
	fail bool
}

func (s *failingStore) CommitEpoch(ctx context.Context, c *store.EpochCommit) error {
	if s.fail {
		return errInjected
	}
	return s.DirectoryStore.CommitEpoch(ctx, c)
}

// TestRestartDurability: with badger, epochs survive a restart: the head,
// the served cosigned checkpoint (kept in the store's head), lookups and
// the admin state (a code issued before the restart is redeemed after it).
func TestRestartDurability(t *testing.T) {
	w := newWorld(t, worldOptions{badger: true, seed: 5})
	ctx := context.Background()
	alice := w.addUser("Alice")
	a1 := w.mustEnrol(alice)
	w.publish()
	bob := w.addUser("Bob")
	code := w.issueCode(bob)
	w.publish()
	must(w.lookup(a1, alice))
	head := w.ten().Head()
	note, _ := w.ten().ServedNote()

	w.stop()
	// The witnesses are down at restart: the stored head still serves.
	for _, tw := range w.witnesses {
		tw.setDown(true)
	}
	w.st = w.openStore()
	svc, err := service.New(ctx, service.Options{
		Tenants: []service.TenantConfig{w.tenantConfig()}, Now: w.clk.Now,
		Logger: discardLogger(), WitnessBackoff: time.Millisecond, WitnessAttempts: 1,
	})
	ok(t, err)
	w.serve(svc)
	if got := w.ten().Head(); got.Epoch != head.Epoch || got.LogSize != head.LogSize || string(got.Checkpoint) != string(note) {
		t.Fatalf("head after restart: epoch %d size %d (want %d, %d), cosigned note %v", got.Epoch, got.LogSize, head.Epoch, head.LogSize, string(got.Checkpoint) == string(note))
	}
	if n, _ := w.ten().ServedNote(); string(n) != string(note) {
		t.Fatal("served note lost")
	}
	must(w.lookup(a1, alice))
	for _, tw := range w.witnesses {
		tw.setDown(false)
	}
	// The code issued before the restart works after it.
	d := w.newDeviceKeys(bob)
	req := must(org.NewEnrolmentRequest(code, d.id, d.mls))
	must(w.api().Enrol(ctx, code, req))
	ep := w.publish()
	res := must(w.lookup(a1, bob))
	if len(res.Devices) != 1 || res.Record.Epoch != ep.Entry.Epoch {
		t.Fatalf("bob after restart: %+v", res)
	}
	h := must(a1.api.History(ctx, alice, 0, a1.kt.TreeSize()))
	must(a1.kt.VerifyHistory(w.tenant, alice, kt.Position{}, h, w.clk.Now()))
}

// TestRestartBeforeCosigning: after a restart between an epoch's commit
// and its cosigning, the store's head holds the log-signed checkpoint
// only: the service serves nothing until the witnesses cosign it, which
// they do (the checkpoint they may have cosigned before the restart is
// the same), and then keeps serving it across the next restart.
func TestRestartBeforeCosigning(t *testing.T) {
	w := newWorld(t, worldOptions{badger: true, seed: 6})
	ctx := context.Background()
	alice := w.addUser("Alice")
	a1 := w.mustEnrol(alice)
	w.publish()
	for _, tw := range w.witnesses {
		tw.setDown(true)
	}
	w.clk.Advance(time.Minute)
	ep := must(w.ten().PublishEpoch(ctx, w.clk.Now()))
	if ep.Cosigned {
		t.Fatal("cosigned with the witnesses down")
	}
	w.stop()
	w.st = w.openStore()
	w.serve(must(service.New(ctx, service.Options{Tenants: []service.TenantConfig{w.tenantConfig()}, Now: w.clk.Now, Logger: discardLogger(),
		WitnessBackoff: time.Millisecond, WitnessAttempts: 1})))
	_, err := w.lookup(a1, alice)
	wantStatus(t, err, http.StatusServiceUnavailable)
	for _, tw := range w.witnesses {
		tw.setDown(false)
	}
	w.clk.Advance(time.Minute)
	ok(t, w.svc.Cosign(ctx))
	must(w.lookup(a1, alice))
	if a1.kt.TreeSize() != ep.Entry.Epoch+1 {
		t.Fatalf("client at size %d, want %d", a1.kt.TreeSize(), ep.Entry.Epoch+1)
	}
	w.stop()
	for _, tw := range w.witnesses {
		tw.setDown(true)
	}
	w.st = w.openStore()
	w.serve(must(service.New(ctx, service.Options{Tenants: []service.TenantConfig{w.tenantConfig()}, Now: w.clk.Now, Logger: discardLogger(),
		WitnessBackoff: time.Millisecond, WitnessAttempts: 1})))
	must(w.lookup(a1, alice))
}

// TestMultipleTenants: two tenants in one service, each with its own store,
// log and keys; nothing of one is usable on the other.
func TestMultipleTenants(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 7})
	ctx := context.Background()
	w2 := newWorld(t, worldOptions{seed: 8})
	// Serve both tenants from one service: w's witnesses witness both logs.
	w2.witnesses = w.witnesses
	for _, tw := range w.witnesses {
		tw.w = must(tlog.NewWitness(tlog.WitnessConfig{Keys: tw.keys, Store: tlog.NewMemoryWitnessStore(),
			Logs: map[string]*keys.LogPublicKey{w.origin: w.keys.Log.Public(), w2.origin: w2.keys.Log.Public()}}))
	}
	w.srv.Close()
	w.st, w2.st = w.openStore(), w2.openStore()
	c1, c2 := w.tenantConfig(), w2.tenantConfig()
	svc := must(service.New(ctx, service.Options{Tenants: []service.TenantConfig{c1, c2}, Now: w.clk.Now, Logger: discardLogger()}))
	ok(t, svc.Cosign(ctx))
	w.svc, w2.svc = svc, svc
	w.srv = newServer(t, svc)
	w2.srv = w.srv
	w2.clk = w.clk

	alice := w.addUser("Alice")
	zoe := w2.addUser("Zoe")
	a1, z1 := w.mustEnrol(alice), w2.mustEnrol(zoe)
	w.publish()
	w2.publish()
	must(w.lookup(a1, alice))
	must(w2.lookup(z1, zoe))
	// Tenant 1's admin on tenant 2: unknown admin id there (the ids are
	// the same in both worlds, so the signature is what fails).
	c := w2.api()
	c.Admin = w.admins[0]
	err := c.AdminOp(ctx, "add-user", service.AddUserRequest{DisplayName: "Mallory"}, nil)
	wantStatus(t, err, http.StatusUnauthorized)
	// Tenant 1's device on tenant 2.
	cross := *a1.api
	cross.Tenant = w2.tenant
	_, err = cross.Lookup(ctx, zoe, 0)
	wantStatus(t, err, http.StatusUnauthorized)
	// An unknown tenant.
	cross.Tenant = org.TenantID{0x99}
	_, err = cross.Lookup(ctx, zoe, 0)
	wantStatus(t, err, http.StatusNotFound)
	// Each tenant's log has its own origin.
	if w.ten().Origin() == w2.ten().Origin() || !strings.HasSuffix(w2.ten().Origin(), "/directory/"+w2.tenant.String()) {
		t.Fatal("origins")
	}
}
