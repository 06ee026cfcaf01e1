package service_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
)

// adminRequest builds POST /v1/{tenant}/admin/{op} with body, signed by
// key at time at (unsigned if key is nil).
func (w *world) adminRequest(op string, body []byte, key *org.AdminPrivateKey, at time.Time) *http.Request {
	req := must(http.NewRequest(http.MethodPost, w.srv.URL+"/v1/"+w.tenant.String()+"/admin/"+op, bytes.NewReader(body)))
	if key != nil {
		ok(w.t, service.SignAdminRequest(req, w.tenant, key, body, at, w.rnd))
	}
	return req
}

func cloneRequest(t testing.TB, req *http.Request, body []byte) *http.Request {
	c := must(http.NewRequest(req.Method, req.URL.String(), bytes.NewReader(body)))
	c.Header = req.Header.Clone()
	return c
}

func jsonBody(v any) []byte { return must(json.Marshal(v)) }

// TestAdminAuthorization: every admin endpoint refuses, with 401, a
// request without a signature, with a bad signature, with a signature over
// another body or another operation, outside the time window, replayed, or
// signed by an admin of another tenant or a key not in the roster; and
// with 403 one signed by a device of the tenant. A correctly signed
// request gets past authentication.
func TestAdminAuthorization(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 20})
	alice := w.addUser("Alice")
	a1 := w.mustEnrol(alice)
	w.publish()
	other := newWorld(t, worldOptions{seed: 21}) // another tenant, its own admins
	stranger := must(org.GenerateAdminKey(w.rnd, org.AdminID{0xee}, org.AdminEd25519))
	impostor := must(org.GenerateAdminKey(w.rnd, w.admins[0].Public().ID(), org.AdminEd25519))

	bodies := map[string][]byte{
		"add-user":          jsonBody(service.AddUserRequest{DisplayName: "New"}),
		"remove-user":       jsonBody(service.UserRequest{User: org.UserID{0x42}.String()}),
		"add-department":    jsonBody(service.DepartmentRequest{Name: "Sales"}),
		"move-department":   jsonBody(service.DepartmentRequest{Department: org.DepartmentID{1}.String()}),
		"rename-department": jsonBody(service.DepartmentRequest{Department: org.DepartmentID{1}.String(), Name: "X"}),
		"remove-department": jsonBody(service.DepartmentRequest{Department: org.DepartmentID{1}.String()}),
		"set-department":    jsonBody(service.DepartmentRequest{User: alice.String()}),
		"issue-code":        jsonBody(service.IssueCodeRequest{User: alice.String()}),
		"cancel-code":       jsonBody(service.CancelCodeRequest{CodeID: org.CodeID{1}.String()}),
		"revoke-device":     jsonBody(service.RevokeDeviceRequest{User: alice.String(), Device: org.DeviceID{1}.String()}),
		"approve":           jsonBody(service.ApproveRequest{User: alice.String()}),
		"set-witnesses":     jsonBody(service.TrustBundleApproveRequest{}),
		"rotate-log-key":    []byte("{}"),
		"rotate-ca":         []byte("{}"),
		"list":              []byte("{}"),
		"publish":           []byte("{}"),
		"publish-policy":    jsonBody(service.PublishPolicyRequest{PolicyID: "dlp"}),
		"assign-policy":     jsonBody(service.AssignPolicyRequest{User: alice.String()}),
		"set-escrow-policy": jsonBody(service.EscrowPolicyRequest{}),
		"update-roster":     jsonBody(service.RosterApproveRequest{}),
		"get-roster":        []byte("{}"),
	}
	if len(bodies) != len(service.AdminOperations()) {
		t.Fatalf("test covers %d operations of %v", len(bodies), service.AdminOperations())
	}
	for _, op := range service.AdminOperations() {
		t.Run(op, func(t *testing.T) {
			body := bodies[op]
			now := w.clk.Now()
			check := func(name string, req *http.Request, want int) {
				t.Helper()
				if got, msg := rawRequest(t, req); got != want {
					t.Errorf("%s: status %d (%s), want %d", name, got, msg, want)
				}
			}
			check("unsigned", w.adminRequest(op, body, nil, now), http.StatusUnauthorized)

			req := w.adminRequest(op, body, w.admins[0], now)
			sig := must(base64.RawURLEncoding.DecodeString(req.Header.Get(service.HeaderSignature)))
			sig[3] ^= 1
			bad := cloneRequest(t, req, body)
			bad.Header.Set(service.HeaderSignature, base64.RawURLEncoding.EncodeToString(sig))
			check("bad signature", bad, http.StatusUnauthorized)
			check("other body", cloneRequest(t, req, append(bytes.Clone(body[:len(body)-1]), ' ', '}')), http.StatusUnauthorized)
			otherOp := must(http.NewRequest(http.MethodPost, w.srv.URL+"/v1/"+w.tenant.String()+"/admin/nonexistent-op", bytes.NewReader(body)))
			otherOp.URL.Path = "/v1/" + w.tenant.String() + "/admin/list"
			if op == "list" {
				otherOp.URL.Path = "/v1/" + w.tenant.String() + "/admin/publish"
			}
			otherOp.Header = req.Header.Clone()
			check("signature of another operation", otherOp, http.StatusUnauthorized)
			noHeader := cloneRequest(t, req, body)
			noHeader.Header.Del(service.HeaderNonce)
			check("no nonce", noHeader, http.StatusUnauthorized)

			check("stale", w.adminRequest(op, body, w.admins[0], now.Add(-10*time.Minute)), http.StatusUnauthorized)
			check("future", w.adminRequest(op, body, w.admins[0], now.Add(10*time.Minute)), http.StatusUnauthorized)
			check("not in the roster", w.adminRequest(op, body, stranger, now), http.StatusUnauthorized)
			check("roster id, another key", w.adminRequest(op, body, impostor, now), http.StatusUnauthorized)
			check("other tenant's admin", w.adminRequest(op, body, other.admins[0], now), http.StatusUnauthorized)
			// The other tenant's admin, signing for its own tenant, sent to
			// this tenant's path.
			cross := must(http.NewRequest(http.MethodPost, w.srv.URL+"/v1/"+w.tenant.String()+"/admin/"+op, bytes.NewReader(body)))
			ok(t, service.SignAdminRequest(cross, other.tenant, other.admins[0], body, now, w.rnd))
			check("signed for another tenant", cross, http.StatusUnauthorized)

			dev := must(http.NewRequest(http.MethodPost, w.srv.URL+"/v1/"+w.tenant.String()+"/admin/"+op, bytes.NewReader(body)))
			ok(t, service.SignDeviceRequest(dev, w.tenant, alice, a1.cert.Device, a1.id.Signing, body, now, w.rnd))
			check("device", dev, http.StatusForbidden)

			// The correctly signed request passes authentication (the
			// operation itself may still refuse it), once.
			got, msg := rawRequest(t, cloneRequest(t, req, body))
			if got == http.StatusUnauthorized || got == http.StatusForbidden {
				t.Errorf("signed request: %d %s", got, msg)
			}
			check("replayed", cloneRequest(t, req, body), http.StatusUnauthorized)
		})
	}
	// The second admin (an Ed25519 key) may act too.
	c := w.api()
	c.Admin = w.admins[1]
	ok(t, c.AdminOp(t.Context(), "list", nil, nil))
}

// TestReadAuthorization: lookups, org lookups and histories return VRF
// proofs, so only an active device of the tenant gets them: unsigned,
// badly signed, replayed, admin-signed, revoked-device and other-tenant
// requests are refused. The trust bundle, checkpoint and consistency
// endpoints are public.
func TestReadAuthorization(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 22})
	alice, bob := w.addUser("Alice"), w.addUser("Bob")
	a1, b1 := w.mustEnrol(alice), w.mustEnrol(bob)
	w.publish()
	must(w.lookup(a1, bob))
	other := newWorld(t, worldOptions{seed: 23})
	zoe := other.addUser("Zoe")
	z1 := other.mustEnrol(zoe)
	other.publish()

	base := w.srv.URL + "/v1/" + w.tenant.String()
	for _, path := range []string{"/lookup/" + alice.String(), "/history/" + alice.String() + "?since=0&size=0", "/org/org-chart"} {
		t.Run(path, func(t *testing.T) {
			now := w.clk.Now()
			get := func() *http.Request { return must(http.NewRequest(http.MethodGet, base+path, nil)) }
			check := func(name string, req *http.Request, want int) {
				t.Helper()
				if got, msg := rawRequest(t, req); got != want {
					t.Errorf("%s: status %d (%s), want %d", name, got, msg, want)
				}
			}
			check("unsigned", get(), http.StatusUnauthorized)
			req := get()
			ok(t, service.SignDeviceRequest(req, w.tenant, bob, b1.cert.Device, b1.id.Signing, nil, now, w.rnd))
			check("signed", cloneRequest(t, req, nil), http.StatusOK)
			check("replayed", cloneRequest(t, req, nil), http.StatusUnauthorized)
			req = get()
			ok(t, service.SignDeviceRequest(req, w.tenant, bob, b1.cert.Device, a1.id.Signing, nil, now, w.rnd))
			check("another device's key", req, http.StatusUnauthorized)
			req = get()
			ok(t, service.SignDeviceRequest(req, w.tenant, alice, b1.cert.Device, b1.id.Signing, nil, now, w.rnd))
			check("device of another user", req, http.StatusUnauthorized)
			req = get()
			ok(t, service.SignDeviceRequest(req, w.tenant, bob, b1.cert.Device, b1.id.Signing, nil, now.Add(-time.Hour), w.rnd))
			check("stale", req, http.StatusUnauthorized)
			req = get()
			ok(t, service.SignAdminRequest(req, w.tenant, w.admins[0], nil, now, w.rnd))
			check("admin", req, http.StatusForbidden)
			req = get()
			ok(t, service.SignDeviceRequest(req, other.tenant, zoe, z1.cert.Device, z1.id.Signing, nil, now, w.rnd))
			check("other tenant's device", req, http.StatusUnauthorized)
			req = get()
			ok(t, service.SignDeviceRequest(req, w.tenant, zoe, z1.cert.Device, z1.id.Signing, nil, now, w.rnd))
			check("other tenant's device, this tenant", req, http.StatusUnauthorized)
		})
	}
	// A revoked device is refused at once.
	ok(t, w.api().AdminOp(t.Context(), "revoke-device", service.RevokeDeviceRequest{User: bob.String(), Device: b1.cert.Device.String()}, nil))
	_, err := b1.api.Lookup(t.Context(), alice, 0)
	wantStatus(t, err, http.StatusUnauthorized)
	// Public endpoints.
	for _, path := range []string{"/trust-bundle", "/checkpoint", "/consistency?from=0"} {
		code, _ := rawRequest(t, must(http.NewRequest(http.MethodGet, base+path, nil)))
		if code != http.StatusOK {
			t.Errorf("%s: %d", path, code)
		}
	}
	// Malformed parameters.
	for _, path := range []string{"/consistency?from=01", "/consistency?from=-1", "/lookup/" + alice.String() + "?size=x", "/lookup/ABC",
		"/org/" + strings.Repeat("x", 256)} {
		req := must(http.NewRequest(http.MethodGet, base+path, nil))
		if code, _ := rawRequest(t, req); code != http.StatusBadRequest {
			t.Errorf("%s: %d", path, code)
		}
	}
}

// TestEnrolmentCodeGuessing: a wrong code is refused (403), and the
// address is rate-limited after a few attempts (429).
func TestEnrolmentCodeGuessing(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 24, limits: service.Limits{Enrol: service.Rate{PerSecond: 0.001, Burst: 3}}})
	alice := w.addUser("Alice")
	code := w.issueCode(alice)
	d := w.newDeviceKeys(alice)
	// A code for alice with a guessed secret: same id, other bytes.
	raw := code.Marshal()
	raw[2+16+16] ^= 1
	guess := must(org.ParseEnrolmentCode(raw))
	req := must(org.NewEnrolmentRequest(guess, d.id, d.mls))
	for range 3 {
		_, err := w.api().Enrol(t.Context(), guess, req)
		wantStatus(t, err, http.StatusForbidden)
	}
	_, err := w.api().Enrol(t.Context(), guess, req)
	wantStatus(t, err, http.StatusTooManyRequests)
}

// sourceLabels reads the "moat/" string literals of a Go file of this
// repository.
func sourceLabels(t *testing.T, path ...string) []string {
	t.Helper()
	file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(append([]string{"..", ".."}, path...)...), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ast.Inspect(file, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(s, "moat/") {
				out = append(out, s)
			}
		}
		return true
	})
	return out
}

// TestLabelsDistinct: the service's domain-separation labels (signed
// requests, the entries' store label) are no prefix of another label of
// the key directory's packages, nor the reverse.
func TestLabelsDistinct(t *testing.T) {
	own := append(sourceLabels(t, "keyserver", "service", "auth.go"), sourceLabels(t, "keyserver", "service", "tenant.go")...)
	if len(own) != 3 {
		t.Fatalf("found %d labels: %q", len(own), own)
	}
	all := append([]string(nil), own...)
	all = append(all, sourceLabels(t, "keyserver", "kt", "labels.go")...)
	all = append(all, sourceLabels(t, "keyserver", "org", "labels.go")...)
	all = append(all, sourceLabels(t, "crypto", "tlog", "labels.go")...)
	all = append(all, sourceLabels(t, "crypto", "internal", "label", "label.go")...)
	for i, a := range all {
		for j, b := range all {
			if i != j && (i < len(own) || j < len(own)) && strings.HasPrefix(a, b) {
				t.Errorf("label %q has label %q as a prefix", a, b)
			}
		}
	}
}

// TestReplayAcrossRestart: the replay cache is in memory, so a signed
// request captured before a restart must not pass after it; a request
// signed after the restart does (directory-api.md §Signed requests).
func TestReplayAcrossRestart(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 23, badger: true})
	w.publish()
	body := []byte("{}")
	now := w.clk.Now()
	req := w.adminRequest("list", body, w.admins[0], now)
	if got, msg := rawRequest(t, cloneRequest(t, req, body)); got != http.StatusOK {
		t.Fatalf("signed request: %d %s", got, msg)
	}
	if got, _ := rawRequest(t, cloneRequest(t, req, body)); got != http.StatusUnauthorized {
		t.Fatalf("replay before the restart: %d", got)
	}
	w.stop()
	w.clk.Advance(time.Second) // inside the auth window
	w.start()
	replay := cloneRequest(t, req, body)
	replay.URL.Host = must(url.Parse(w.srv.URL)).Host
	if got, msg := rawRequest(t, replay); got != http.StatusUnauthorized || !strings.Contains(msg, "before the directory started") {
		t.Fatalf("replay after the restart: %d %s", got, msg)
	}
	fresh := w.adminRequest("list", body, w.admins[0], w.clk.Now())
	if got, msg := rawRequest(t, fresh); got != http.StatusOK {
		t.Fatalf("request signed after the restart: %d %s", got, msg)
	}
}
