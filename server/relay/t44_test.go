package relay_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/server/relay"
)

// TestT44Authorization: every authenticated endpoint refuses a request
// without a session, with a forged token, with a session of another
// purpose, with another device's session (same tenant), and with the
// session of a device of another tenant that has the same device id; the
// endpoints of another device's keys refuse another tenant's devices. The
// owner's own session is accepted.
func TestT44Authorization(t *testing.T) {
	w := newWorld(t, worldOptions{})
	a := w.newDevice(tenantA, 3, 3)
	b := w.newDevice(tenantA, 3, 3)
	x := w.newDeviceID(tenantB, a.id, 3, 3) // another tenant, A's device id
	for _, d := range []*device{a, b, x} {
		w.publish(d)
	}
	sess := map[*device]map[deviceauth.Purpose]string{}
	for _, d := range []*device{a, b, x} {
		sess[d] = map[deviceauth.Purpose]string{}
		for _, p := range []deviceauth.Purpose{deviceauth.PurposeMailbox, deviceauth.PurposePrekeys, deviceauth.PurposeDeliveryTokens} {
			sess[d][p] = w.session(d, p)
		}
	}
	mbA := relay.MailboxText(a.mailbox())
	verifier := fmt.Sprintf("%064x", 7)
	upload := must(a.upload.Marshal())
	type endpoint struct {
		method, path string
		purpose      deviceauth.Purpose
		body         []byte
		own          bool // the device's own resource; else another device's keys
		okStatus     int
	}
	eps := []endpoint{
		{"GET", "/relay/v1/mailboxes/" + mbA + "/messages", deviceauth.PurposeMailbox, nil, true, 200},
		{"POST", "/relay/v1/mailboxes/" + mbA + "/ack?up-to=1", deviceauth.PurposeMailbox, nil, true, 409},
		{"GET", "/relay/v1/mailboxes/" + mbA + "/push", deviceauth.PurposeMailbox, nil, true, 426},
		{"PUT", "/relay/v1/mailboxes/" + mbA + "/verifiers/" + verifier, deviceauth.PurposeDeliveryTokens, nil, true, 204},
		{"DELETE", "/relay/v1/mailboxes/" + mbA + "/verifiers/" + verifier, deviceauth.PurposeDeliveryTokens, nil, true, 204},
		{"PUT", "/relay/v1/devices/" + mbA + "/prekeys", deviceauth.PurposePrekeys, upload, true, 204},
		{"GET", "/relay/v1/devices/" + mbA + "/prekeys", deviceauth.PurposePrekeys, nil, true, 200},
		{"GET", "/relay/v1/devices/" + mbA + "/bundle", deviceauth.PurposePrekeys, nil, false, 200},
		{"GET", "/relay/v1/devices/" + mbA + "/key-package", deviceauth.PurposePrekeys, nil, false, 200},
	}
	otherPurpose := func(p deviceauth.Purpose) deviceauth.Purpose {
		if p == deviceauth.PurposeMailbox {
			return deviceauth.PurposePrekeys
		}
		return deviceauth.PurposeMailbox
	}
	forged := relay.AuthScheme + " " + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{1}, relay.SessionTokenSize))
	for _, ep := range eps {
		t.Run(ep.method+" "+ep.path[len("/relay/v1/"):len("/relay/v1/")+8], func(t *testing.T) {
			check := func(what, auth string, want int) {
				t.Helper()
				if got := w.call(ep.method, ep.path, auth, ep.body); got != want {
					t.Errorf("%s %s, %s: status %d, want %d", ep.method, ep.path, what, got, want)
				}
			}
			check("no session", "", 401)
			check("forged token", forged, 401)
			check("malformed header", "Bearer x", 401)
			check("session of another purpose", sess[a][otherPurpose(ep.purpose)], 403)
			check("another tenant's device with the same id", sess[x][ep.purpose], 403)
			if ep.own {
				check("another device of the tenant", sess[b][ep.purpose], 403)
				check("the owner", sess[a][ep.purpose], ep.okStatus)
			} else {
				check("a device of the tenant", sess[b][ep.purpose], ep.okStatus)
			}
		})
	}

	t.Run("device auth", func(t *testing.T) {
		resp := w.authResponse(a, deviceauth.PurposeMailbox)
		path := "/relay/v1/auth/session?purpose=mailbox"
		if got := w.call("POST", path, "", resp); got != 200 {
			t.Fatalf("first answer: %d", got)
		}
		if got := w.call("POST", path, "", resp); got != 401 {
			t.Errorf("replayed answer: %d", got)
		}
		resp = w.authResponse(a, deviceauth.PurposeMailbox)
		if got := w.call("POST", "/relay/v1/auth/session?purpose=prekeys", "", resp); got != 401 {
			t.Errorf("answer for another purpose: %d", got)
		}
		// A device of another tenant cannot answer as A (its key is not A's).
		chalResp := w.authResponse(x, deviceauth.PurposeMailbox)
		tampered := bytes.Clone(chalResp)
		copy(tampered[len(tampered)-64-32:], tenantA[:]) // claim tenant A
		if got := w.call("POST", path, "", tampered); got != 401 {
			t.Errorf("another tenant's device claiming tenant A: %d", got)
		}
		if got := w.call("POST", "/relay/v1/auth/session?purpose=nonsense", "", resp); got != 400 {
			t.Errorf("unknown purpose: %d", got)
		}
	})

	t.Run("send", func(t *testing.T) {
		ctx := context.Background()
		tokA := w.token(a, 1)
		envB := envelope(t, a, b, []byte("hi"))
		_, err := w.anon().Send(ctx, tokA, envB)
		wantStatus(t, err, http.StatusForbidden) // A's token on B's mailbox
		envX := envelope(t, b, x, []byte("hi"))
		_, err = w.anon().Send(ctx, tokA, envX)
		wantStatus(t, err, http.StatusForbidden) // A's token on another tenant's device with A's id
		// The same token on its own mailbox works.
		_, err = w.anon().Send(ctx, tokA, envelope(t, b, a, []byte("hi")))
		ok(t, err)
		// A revoked token stops working.
		ok(t, a.c.RemoveVerifier(ctx, a.tokens.Verifier(a.mailbox(), deliverytoken.ContactID{1}, 0)))
		_, err = w.anon().Send(ctx, tokA, envelope(t, b, a, []byte("again")))
		wantStatus(t, err, http.StatusForbidden)
		// No authorisation at all.
		req := must(http.NewRequest("POST", w.srv.URL+"/relay/v1/send", bytes.NewReader(envB)))
		if code, _, _ := raw(t, req); code != http.StatusUnauthorized {
			t.Errorf("send without a token: %d", code)
		}
	})
}

// TestT44AnonymousTokens: an anonymous token of tenant A is accepted once
// for a mailbox of tenant A, and refused for tenant B and when spent again.
func TestT44AnonymousTokens(t *testing.T) {
	issuer := must(deliverytoken.GenerateIssuerKey())
	iks := deliverytoken.NewMemoryIssuerKeys()
	iks.Add(tenantA, issuer.Public())
	w := newWorld(t, worldOptions{issuers: iks})
	a := w.newDevice(tenantA, 0, 0)
	b := w.newDevice(tenantA, 0, 0)
	x := w.newDevice(tenantB, 0, 0)
	for _, d := range []*device{a, b, x} {
		w.publish(d)
	}
	req, pending, err := deliverytoken.RequestTokens(issuer.Public(), tenantA, 2)
	ok(t, err)
	resp, _, err := issuer.Issue(req)
	ok(t, err)
	toks, err := pending.Finalize(resp)
	ok(t, err)
	auth := func(i int) []byte {
		return must((&deliverytoken.SendAuthorization{Kind: deliverytoken.KindAnonymous, Anonymous: toks[i]}).Marshal())
	}
	ctx := context.Background()
	_, err = w.anon().Send(ctx, auth(0), envelope(t, a, x, []byte("x")))
	wantStatus(t, err, http.StatusForbidden) // tenant A's token, tenant B's mailbox
	_, err = w.anon().Send(ctx, auth(0), envelope(t, a, b, []byte("b")))
	ok(t, err)
	_, err = w.anon().Send(ctx, auth(0), envelope(t, a, b, []byte("b again")))
	wantStatus(t, err, http.StatusForbidden) // spent
	_, err = w.anon().Send(ctx, auth(1), envelope(t, a, b, []byte("b, second token")))
	ok(t, err)
}
