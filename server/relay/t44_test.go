package relay_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/blob/memblob"
)

// TestT44Authorization: every authenticated endpoint refuses a request
// without a session, with a forged token, with a session of another
// purpose, with another device's session (same tenant), and with the
// session of a device of another tenant that has the same device id; the
// endpoints of another device's keys refuse another tenant's devices. The
// owner's own session is accepted. The token issuance endpoints answer
// for the session's tenant only (tenant B has no issuer: 404); any
// device may create an attachment upload, and only the creating device,
// with the upload token of the creation's answer, may append to it, ask
// its state or finalize it (docs/spec/attachments.md §Upload capability;
// "attachment upload capability" below). A session of purpose "all"
// passes every purpose check and no other.
func TestT44Authorization(t *testing.T) {
	w := newWorld(t, worldOptions{})
	w.srv.Close()
	w.relay.Close()
	issuer := must(deliverytoken.GenerateIssuerKey())
	issuers := relay.NewIssuerSet()
	issuers.Set(tenantA, issuer)
	w.opts.TokenIssuer, w.opts.Issuers = issuers, issuers
	w.opts.Blobs = must(memblob.New(memblob.Options{}))
	w.start()
	a := w.newDevice(tenantA, 3, 3)
	b := w.newDevice(tenantA, 3, 3)
	x := w.newDeviceID(tenantB, a.id, 3, 3) // another tenant, A's device id
	for _, d := range []*device{a, b, x} {
		w.publish(d)
	}
	sess := map[*device]map[deviceauth.Purpose]string{}
	for _, d := range []*device{a, b, x} {
		sess[d] = map[deviceauth.Purpose]string{}
		for _, p := range []deviceauth.Purpose{deviceauth.PurposeMailbox, deviceauth.PurposePrekeys, deviceauth.PurposeDeliveryTokens,
			deviceauth.PurposeAttachments, deviceauth.PurposeTokenIssuance, deviceauth.PurposeAll} {
			sess[d][p] = w.session(d, p)
		}
	}
	mbA := relay.MailboxText(a.mailbox())
	verifier := fmt.Sprintf("%064x", 7)
	upload := must(a.upload.Marshal())
	issueReq, _ := must2(deliverytoken.RequestTokens(issuer.Public(), tenantA, 1))
	expires := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	chunk := []byte("ciphertext")
	up, err := a.c.CreateAttachment(context.Background(), int64(len(chunk)), time.Now().Add(time.Hour))
	ok(t, err)
	att := "/relay/v1/attachments/" + up.ID.String()
	tokA := relay.FormatUploadToken(&up.Token)
	type endpoint struct {
		method, path string
		purpose      deviceauth.Purpose
		body         []byte
		own          bool // the device's own resource; else another device's keys
		okStatus     int
		// cross is the answer to another tenant's device with A's
		// device id; 0 means 403.
		cross  int
		header http.Header
	}
	eps := []endpoint{
		{"GET", "/relay/v1/mailboxes/" + mbA + "/messages", deviceauth.PurposeMailbox, nil, true, 200, 0, nil},
		{"POST", "/relay/v1/mailboxes/" + mbA + "/ack?up-to=1", deviceauth.PurposeMailbox, nil, true, 409, 0, nil},
		{"GET", "/relay/v1/mailboxes/" + mbA + "/push", deviceauth.PurposeMailbox, nil, true, 426, 0, nil},
		{"PUT", "/relay/v1/mailboxes/" + mbA + "/verifiers/" + verifier, deviceauth.PurposeDeliveryTokens, nil, true, 204, 0, nil},
		{"DELETE", "/relay/v1/mailboxes/" + mbA + "/verifiers/" + verifier, deviceauth.PurposeDeliveryTokens, nil, true, 204, 0, nil},
		{"PUT", "/relay/v1/devices/" + mbA + "/prekeys", deviceauth.PurposePrekeys, upload, true, 204, 0, nil},
		{"GET", "/relay/v1/devices/" + mbA + "/prekeys", deviceauth.PurposePrekeys, nil, true, 200, 0, nil},
		{"GET", "/relay/v1/devices/" + mbA + "/bundle", deviceauth.PurposePrekeys, nil, false, 200, 0, nil},
		{"GET", "/relay/v1/devices/" + mbA + "/key-package", deviceauth.PurposePrekeys, nil, false, 200, 0, nil},
		{"GET", "/relay/v1/tokens/issuer-key", deviceauth.PurposeTokenIssuance, nil, false, 200, 404, nil},
		{"POST", "/relay/v1/tokens/issue", deviceauth.PurposeTokenIssuance, issueReq, false, 200, 404, nil},
		{"POST", "/relay/v1/attachments?size=10&expires=" + expires, deviceauth.PurposeAttachments, nil, false, 201, 201, nil},
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
				req := must(http.NewRequest(ep.method, w.srv.URL+ep.path, bytes.NewReader(ep.body)))
				for k, v := range ep.header {
					req.Header[k] = v
				}
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				if got, _, _ := raw(t, req); got != want {
					t.Errorf("%s %s, %s: status %d, want %d", ep.method, ep.path, what, got, want)
				}
			}
			check("no session", "", 401)
			check("forged token", forged, 401)
			check("malformed header", "Bearer x", 401)
			check("session of another purpose", sess[a][otherPurpose(ep.purpose)], 403)
			cross := ep.cross
			if cross == 0 {
				cross = 403
			}
			// A session of purpose all is authorised for every purpose,
			// and only for its own device's resources.
			for _, p := range []deviceauth.Purpose{ep.purpose, deviceauth.PurposeAll} {
				check("another tenant's device with the same id", sess[x][p], cross)
				if ep.own {
					check("another device of the tenant", sess[b][p], 403)
					check("the owner", sess[a][p], ep.okStatus)
				} else {
					check("a device of the tenant", sess[b][p], ep.okStatus)
				}
			}
		})
	}

	t.Run("attachment upload capability", func(t *testing.T) {
		type call struct {
			method, path string
			body         []byte
			header       http.Header
			ok           int
		}
		calls := []call{
			{"GET", att + "/upload", nil, nil, 200},
			{"PATCH", att + "/upload", chunk, http.Header{relay.HeaderUploadOffset: {"0"}}, 204},
			{"POST", att + "/finalize", nil, nil, 204},
		}
		send := func(c call, auth string, token []string) (int, []byte) {
			t.Helper()
			req := must(http.NewRequest(c.method, w.srv.URL+c.path, bytes.NewReader(c.body)))
			for k, v := range c.header {
				req.Header[k] = v
			}
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			if token != nil {
				req.Header[relay.HeaderUploadToken] = token
			}
			code, _, body := raw(t, req)
			return code, body
		}
		wrong := relay.UploadToken{7}
		wrongTok := relay.FormatUploadToken(&wrong)
		// The answer to an unknown blob, with A's token and session.
		unknown := func(c call) (int, []byte) {
			c.path = strings.Replace(c.path, up.ID.String(), strings.Repeat("ab", 32), 1)
			return send(c, sess[a][deviceauth.PurposeAttachments], []string{tokA})
		}
		refusals := func(final bool) {
			t.Helper()
			for _, c := range calls {
				// The session comes first, even with the token.
				for auth, want := range map[string]int{"": 401, forged: 401, "Bearer x": 401,
					sess[a][deviceauth.PurposeMailbox]: 403, sess[a][deviceauth.PurposeTokenIssuance]: 403} {
					if code, _ := send(c, auth, []string{tokA}); code != want {
						t.Errorf("%s %s with the token, session %.12q: %d, want %d", c.method, c.path, auth, code, want)
					}
				}
				uc, ub := unknown(c)
				if uc != 404 {
					t.Fatalf("%s %s of an unknown blob: %d", c.method, c.path, uc)
				}
				for _, d := range []struct {
					name string
					dev  *device
				}{{"another tenant's device with A's device id", x}, {"another device of the tenant", b}, {"the creator", a}} {
					auth := sess[d.dev][deviceauth.PurposeAttachments]
					// The id alone: 400, whoever asks, before the store is
					// consulted.
					for _, tok := range [][]string{{}, {""}, {tokA[:42]}, {tokA + "A"}, {tokA[:42] + "B"}, {tokA, tokA}} {
						if code, _ := send(c, auth, tok); code != 400 {
							t.Errorf("%s %s, %s, token %q: %d, want 400", c.method, c.path, d.name, tok, code)
						}
					}
					toks := []string{wrongTok}
					if d.dev != a {
						toks = append(toks, tokA)
					}
					for _, tok := range toks {
						// Refused exactly as an unknown blob is.
						if code, body := send(c, auth, []string{tok}); code != uc || !bytes.Equal(body, ub) {
							t.Errorf("%s %s, %s, final %v, token %s: %d %q, want %d %q", c.method, c.path, d.name, final, tok[:4], code, body, uc, ub)
						}
					}
				}
			}
		}
		refusals(false)
		// Nothing changed: the upload is empty and open.
		if st := must(a.c.AttachmentUploadStatus(context.Background(), up)); st.Committed != 0 || st.Final {
			t.Fatalf("after the refused calls: %+v", st)
		}
		for _, c := range calls {
			if code, body := send(c, sess[a][deviceauth.PurposeAttachments], []string{tokA}); code != c.ok {
				t.Fatalf("%s %s by the creator: %d %s", c.method, c.path, code, body)
			}
		}
		// A finalized upload: the same refusals, and its finalization
		// is not revealed to others.
		refusals(true)
		if code := w.call("GET", att, "", nil); code != 200 {
			t.Fatalf("download by id: %d", code)
		}
	})

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
