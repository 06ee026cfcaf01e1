package relay_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/blob"
)

// TestT44AttachmentDelete: DELETE /relay/v1/attachments/{id}
// (docs/spec/attachments.md §Delete) needs an attachments session of the
// creating device and its upload token. Every other caller — no session,
// a forged or other-purpose session, another device of the tenant or a
// device of another tenant with the same device id (with the creator's
// token or another), the creator with a wrong token — is refused, and a
// refusal by token is the same 404 as an unknown blob's; nothing is
// deleted. The creator deletes an open and a finalized upload (204):
// both are gone from the store, downloads answer 404, and a repeated
// delete is 404. Deleting gives no budget back; a store that cannot answer is 503.
func TestT44AttachmentDelete(t *testing.T) {
	ctx := context.Background()
	w, clk, store := attachWorld(t, relay.Limits{}, relay.AttachmentLimits{
		DeviceBudget: relay.Rate{PerSecond: 0.001, Burst: 30}}, blob.Limits{})
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	x := w.newDeviceID(tenantB, a.id, 0, 0) // another tenant, A's device id
	exp := clk.now().Add(time.Hour)
	open := must(a.c.CreateAttachment(ctx, 10, exp))
	final := must(a.c.CreateAttachment(ctx, 10, exp))
	must(a.c.AppendAttachment(ctx, final, 0, []byte("ciphertext")))
	ok(t, a.c.FinalizeAttachment(ctx, final))

	del := func(id blob.ID, auth string, tok []string) (int, []byte) {
		t.Helper()
		req := must(http.NewRequest(http.MethodDelete, w.srv.URL+"/relay/v1/attachments/"+id.String(), nil))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if tok != nil {
			req.Header[relay.HeaderUploadToken] = tok
		}
		code, _, body := raw(t, req)
		return code, body
	}
	sessA := w.session(a, deviceauth.PurposeAttachments)
	unknownID := blob.ID{0xab}
	uc, ub := del(unknownID, sessA, []string{relay.FormatUploadToken(&open.Token)})
	if uc != http.StatusNotFound {
		t.Fatalf("delete of an unknown blob: %d", uc)
	}
	forged := relay.AuthScheme + " " + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{1}, relay.SessionTokenSize))
	wrong := relay.UploadToken{7}
	for _, up := range []*relay.AttachmentUpload{open, final} {
		tok := relay.FormatUploadToken(&up.Token)
		for auth, want := range map[string]int{"": 401, forged: 401, "Bearer x": 401,
			w.session(a, deviceauth.PurposeMailbox): 403, w.session(a, deviceauth.PurposeTokenIssuance): 403} {
			if code, _ := del(up.ID, auth, []string{tok}); code != want {
				t.Errorf("session %.12q: %d, want %d", auth, code, want)
			}
		}
		for _, d := range []*device{a, b, x} {
			auth := w.session(d, deviceauth.PurposeAttachments)
			for _, h := range [][]string{{}, {""}, {tok[:42]}, {tok + "A"}, {tok, tok}} {
				if code, _ := del(up.ID, auth, h); code != 400 {
					t.Errorf("token header %q: %d, want 400", h, code)
				}
			}
			toks := []string{relay.FormatUploadToken(&wrong)}
			if d != a {
				toks = append(toks, tok)
			}
			for _, tk := range toks {
				if code, body := del(up.ID, auth, []string{tk}); code != uc || !bytes.Equal(body, ub) {
					t.Errorf("refused delete: %d %q, want %d %q as for an unknown blob", code, body, uc, ub)
				}
			}
		}
	}
	// Nothing was deleted.
	if st := must(a.c.AttachmentUploadStatus(ctx, open)); st.Final || st.Committed != 0 {
		t.Fatalf("open upload after refusals: %+v", st)
	}
	if code := w.call("GET", "/relay/v1/attachments/"+final.ID.String(), "", nil); code != 200 {
		t.Fatalf("download after refusals: %d", code)
	}

	// The creator deletes both.
	for _, up := range []*relay.AttachmentUpload{open, final} {
		ok(t, a.c.DeleteAttachment(ctx, up.ID, up.Token))
		if _, err := store.Info(ctx, up.ID); !strings.Contains(errString(err), "not found") {
			t.Fatalf("store after delete: %v", err)
		}
		if code := w.call("GET", "/relay/v1/attachments/"+up.ID.String(), "", nil); code != 404 {
			t.Fatalf("download after delete: %d", code)
		}
		_, err := a.c.AttachmentUploadStatus(ctx, up)
		wantStatus(t, err, http.StatusNotFound)
		wantStatus(t, a.c.DeleteAttachment(ctx, up.ID, up.Token), http.StatusNotFound)
	}
	// 20 of a's 30 bytes were taken; deleting gave none back.
	_, err := a.c.CreateAttachment(ctx, 11, exp)
	wantStatus(t, err, http.StatusInsufficientStorage)
	last := must(a.c.CreateAttachment(ctx, 10, exp))
	if m := metricsText(t, w); !strings.Contains(m, `moat_relay_attachment_requests_total{op="delete",result="ok"} 2`) ||
		!strings.Contains(m, `moat_relay_attachment_requests_total{op="delete",result="denied"}`) {
		t.Error("delete metrics missing")
	}
	// A store that cannot answer: 503 with Retry-After.
	ok(t, store.Close())
	err = a.c.DeleteAttachment(ctx, last.ID, last.Token)
	wantStatus(t, err, http.StatusServiceUnavailable)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
