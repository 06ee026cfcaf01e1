package relay_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/prekey"
	"github.com/moat-im/moat/server/store/tokens/badgertokens"
)

// TestRevokedDeviceForgotten: once the relay finds a device revoked — at
// the device's own next request, or at a fetch of its bundle or
// KeyPackage — it deletes the device's prekeys, sealed-sender key and
// KeyPackages and its delivery-token verifiers (docs/spec/api.md §Revoked
// devices), with the in-memory and the badger verifier stores; another
// device's keep theirs.
func TestRevokedDeviceForgotten(t *testing.T) {
	for _, durable := range []bool{false, true} {
		name := "memory"
		if durable {
			name = "badger"
		}
		t.Run(name, func(t *testing.T) {
			var vs relay.Verifiers = deliverytoken.NewMemoryVerifiers()
			if durable {
				s := must(badgertokens.Open(context.Background(), badgertokens.Options{Dir: t.TempDir(),
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DiskReserve: -1}))
				t.Cleanup(func() { s.Close() })
				vs = s
			}
			for _, via := range []string{"own request", "bundle fetch", "key-package fetch"} {
				w := newWorld(t, worldOptions{verifiers: vs})
				ctx := context.Background()
				a, b := w.newDevice([16]byte{7}, 2, 2), w.newDevice([16]byte{7}, 2, 2)
				w.publish(a)
				w.publish(b)
				w.token(a, 1)
				w.token(b, 1)
				va := a.tokens.Verifier(a.mailbox(), deliverytoken.ContactID{1}, 0)
				vb := b.tokens.Verifier(b.mailbox(), deliverytoken.ContactID{1}, 0)
				held := func(d *device) bool {
					st := must(w.opts.Prekeys.Status(ctx, prekey.ID(d.mailbox())))
					return st.Has[prekey.SignedPrekey] || st.Pools[prekey.KeyPackage] > 0 || st.Pools[prekey.OneTimePrekey] > 0
				}
				if !held(a) || !must(vs.HasVerifier(a.mailbox(), va)) {
					t.Fatal("setup: nothing stored")
				}
				w.dir.Revoke(a.tenant, a.id)
				switch via {
				case "own request":
					_, err := a.c.PrekeyStatus(ctx)
					wantStatus(t, err, http.StatusUnauthorized)
				case "bundle fetch":
					_, err := b.c.FetchBundle(ctx, a.mailbox())
					wantStatus(t, err, http.StatusNotFound)
				case "key-package fetch":
					_, err := b.c.FetchKeyPackage(ctx, a.mailbox())
					wantStatus(t, err, http.StatusNotFound)
				}
				if held(a) {
					t.Errorf("%s: the revoked device's prekeys are kept", via)
				}
				if must(vs.HasVerifier(a.mailbox(), va)) {
					t.Errorf("%s: the revoked device's verifier is kept", via)
				}
				if !held(b) || !must(vs.HasVerifier(b.mailbox(), vb)) {
					t.Fatalf("%s: the other device lost its keys", via)
				}
			}
		})
	}
}
