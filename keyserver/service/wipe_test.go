package service_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
)

// TestWipeInstructionEndpoint: GET /v1/{tenant}/wipe answers a revoked
// device, signing with its identity key, with its CA-signed wipe
// instruction, after a restart too (it is derived from the durable
// revocation record); an active device gets 404; an unsigned request, a
// request for the revoked device signed by another device's key, and an
// admin get no instruction; the revoked device still may not look up.
func TestWipeInstructionEndpoint(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, worldOptions{seed: 61, badger: true})
	alice, bob := w.addUser("Alice"), w.addUser("Bob")
	a1, b1 := w.mustEnrol(alice), w.mustEnrol(bob)
	w.publish()

	_, err := a1.api.Wipe(ctx)
	wantStatus(t, err, http.StatusNotFound)

	var rv service.RevokeDeviceResponse
	ok(t, w.api().AdminOp(ctx, "revoke-device", service.RevokeDeviceRequest{User: alice.String(), Device: a1.cert.Device.String(), Reason: "lost"}, &rv))
	_, err = w.lookup(a1, alice)
	wantStatus(t, err, http.StatusUnauthorized)

	check := func() {
		t.Helper()
		enc, err := a1.api.Wipe(ctx)
		ok(t, err)
		wi, err := org.ParseWipeInstruction(enc)
		ok(t, err)
		ok(t, wi.Verify(w.ten().TrustBundle().CA, w.tenant, a1.cert.Device, a1.cert.Serial))
		adminWipe := must(org.ParseWipeInstruction(rv.Wipe))
		if wi.User != alice || !wi.IssuedAt.Equal(adminWipe.IssuedAt) || wi.Serial != adminWipe.Serial {
			t.Fatalf("served instruction %+v, revocation's %+v", wi, adminWipe)
		}
	}
	check()
	w.publish()
	w.restartBadger()
	check()

	// Bob's key signing as Alice's revoked device.
	forged := &service.Client{BaseURL: w.srv.URL, Tenant: w.tenant, Now: w.clk.Now,
		Device: &service.DeviceCredentials{User: alice, Device: a1.cert.Device, Key: b1.id.Signing}}
	_, err = forged.Wipe(ctx)
	wantStatus(t, err, http.StatusUnauthorized)
	// Unsigned, and an admin.
	req := must(http.NewRequest(http.MethodGet, w.srv.URL+"/v1/"+w.tenant.String()+"/wipe", nil))
	if code, _ := rawRequest(t, req); code != http.StatusUnauthorized {
		t.Fatalf("unsigned: %d", code)
	}
	admin := w.api()
	body := []byte(nil)
	req = must(http.NewRequest(http.MethodGet, w.srv.URL+"/v1/"+w.tenant.String()+"/wipe", bytes.NewReader(body)))
	ok(t, service.SignAdminRequest(req, w.tenant, admin.Admin, body, w.clk.Now(), w.rnd))
	if code, _ := rawRequest(t, req); code != http.StatusForbidden {
		t.Fatalf("admin: %d", code)
	}
	// Bob, active, still has none.
	_, err = b1.api.Wipe(ctx)
	wantStatus(t, err, http.StatusNotFound)
}

// BenchmarkWipeInstruction: the directory's cost of answering a revoked
// device's GET /v1/{tenant}/wipe, without HTTP: one CA signature.
func BenchmarkWipeInstruction(b *testing.B) {
	ctx := context.Background()
	w := newWorld(b, worldOptions{seed: 62})
	alice := w.addUser("Alice")
	a1 := w.mustEnrol(alice)
	ok(b, w.api().AdminOp(ctx, "revoke-device", service.RevokeDeviceRequest{User: alice.String(), Device: a1.cert.Device.String()}, nil))
	for b.Loop() {
		if _, err := w.ten().WipeInstruction(alice, a1.cert.Device); err != nil {
			b.Fatal(err)
		}
	}
}
