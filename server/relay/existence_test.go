package relay_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/server/relay"
)

// countingDirectory counts the relay's device-directory lookups.
type countingDirectory struct {
	relay.DeviceDirectory
	n atomic.Int64
}

func (c *countingDirectory) Device(tenant, device [16]byte, now time.Time) (*relay.Device, error) {
	c.n.Add(1)
	return c.DeviceDirectory.Device(tenant, device, now)
}

// answer is what a caller sees of a response.
type answer struct {
	code  int
	retry string
	body  string
}

// TestMailboxExistenceHidden: a caller without a valid token gets the same
// answer for a send to an existing mailbox, to an absent device of an
// existing tenant and to a mailbox of an unknown tenant, and the relay
// does not even ask its device directory; a device gets the same answer
// for another tenant's existing and absent devices' bundles, and hits the
// per-target limit alike.
func TestMailboxExistenceHidden(t *testing.T) {
	issuer := must(deliverytoken.GenerateIssuerKey())
	set := relay.NewIssuerSet()
	set.Set(tenantA, issuer)
	w := newWorld(t, worldOptions{issuers: set, limits: relay.Limits{BundlePerTarget: relay.Rate{PerSecond: 0.001, Burst: 1}}})
	w.srv.Close()
	w.relay.Close()
	dir := &countingDirectory{DeviceDirectory: w.dir}
	w.opts.Directory = dir
	w.start()

	a := w.newDevice(tenantA, 0, 0)
	b := w.newDevice(tenantA, 1, 1)
	x := w.newDevice(tenantB, 1, 1)
	for _, d := range []*device{a, b, x} {
		w.publish(d)
	}
	// Envelopes to b, to an absent device of tenant A and to a device of
	// an unknown tenant, sealed alike (b's sealed-sender key, the
	// recipient mailbox rewritten).
	absent := &device{tenant: tenantA, id: [16]byte{0xab, 0x5e}, idk: b.idk, upload: b.upload}
	stranger := &device{tenant: [16]byte{0x99}, id: [16]byte{0xab, 0x5e}, idk: b.idk, upload: b.upload}
	targets := []*device{b, absent, stranger}

	// An anonymous token of tenant A that was never issued: right form,
	// wrong authenticator.
	forged := &deliverytoken.AnonymousToken{ChallengeDigest: deliverytoken.ChallengeDigest(tenantA), KeyID: issuer.Public().KeyID()}
	forged.Nonce[0] = 1
	forgedAuth := must(relay.AnonymousAuthorization(forged))
	// A real token of tenant A, spent once.
	req, pending := must2(deliverytoken.RequestTokens(issuer.Public(), tenantA, 1))
	resp, _, err := issuer.Issue(req)
	ok(t, err)
	spent := must(pending.Finalize(resp))[0]
	spentAuth := must(relay.AnonymousAuthorization(spent))
	_, err = w.anon().Send(context.Background(), spentAuth, envelope(t, a, b, []byte("spend")))
	ok(t, err)

	cases := map[string][]byte{
		"no authorization":  nil,
		"malformed":         {1, 2, 3},
		"unregistered MAC":  macAuth(deliverytoken.Token{7}),
		"b's MAC for a":     w.token(b, 9), // registered for b only
		"forged anonymous":  forgedAuth,
		"spent anonymous":   spentAuth,
		"other tenant anon": must(relay.AnonymousAuthorization(&deliverytoken.AnonymousToken{ChallengeDigest: deliverytoken.ChallengeDigest(tenantB), KeyID: [32]byte{1}})),
	}
	before := dir.n.Load()
	for name, auth := range cases {
		var got []answer
		for _, to := range targets {
			env := envelope(t, a, to, []byte("probe"))
			if name == "b's MAC for a" && to == b {
				continue // valid for b: not a probe
			}
			req := must(http.NewRequest(http.MethodPost, w.srv.URL+"/relay/v1/send", bytes.NewReader(env)))
			if auth != nil {
				req.Header.Set(relay.HeaderSendAuthorization, base64.RawURLEncoding.EncodeToString(auth))
			}
			code, retry, body := raw(t, req)
			got = append(got, answer{code, retry, string(body)})
		}
		for i := 1; i < len(got); i++ {
			if got[i] != got[0] {
				t.Errorf("%s: answers differ: %+v", name, got)
				break
			}
		}
		if got[0].code/100 == 2 || got[0].code == http.StatusNotFound {
			t.Errorf("%s: %+v", name, got[0])
		}
	}
	if n := dir.n.Load() - before; n != 0 {
		t.Errorf("refused sends made %d directory lookups", n)
	}

	// Bundles: another tenant's existing and absent devices alike.
	sess := w.session(x, deviceauth.PurposePrekeys)
	for _, path := range []string{"/bundle", "/key-package"} {
		var got []answer
		for _, to := range []*device{b, absent} {
			r := must(http.NewRequest(http.MethodGet, w.srv.URL+"/relay/v1/devices/"+mailboxText(to)+path, nil))
			r.Header.Set("Authorization", sess)
			code, retry, body := raw(t, r)
			got = append(got, answer{code, retry, string(body)})
			r = must(http.NewRequest(http.MethodGet, w.srv.URL+"/relay/v1/devices/"+mailboxText(to)+path, nil))
			code, retry, body = raw(t, r)
			got = append(got, answer{code, retry, string(body)})
		}
		if got[0] != got[2] || got[1] != got[3] || got[0].code != http.StatusForbidden || got[1].code != http.StatusUnauthorized {
			t.Errorf("%s: %+v", path, got)
		}
	}
	// The per-target limit (burst 1) comes before the lookup: the second
	// fetch of an absent device is limited like that of an existing one.
	asess := w.session(a, deviceauth.PurposePrekeys)
	other := &device{tenant: tenantA, id: [16]byte{0xab, 0x5f}}
	for _, to := range []*device{other, w.newDevice(tenantA, 0, 0)} {
		var codes []int
		for range 2 {
			codes = append(codes, w.call(http.MethodGet, "/relay/v1/devices/"+mailboxText(to)+"/bundle", asess, nil))
		}
		if codes[1] != http.StatusTooManyRequests {
			t.Errorf("%x: second fetch %v", to.id[:2], codes)
		}
	}
}
