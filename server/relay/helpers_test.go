package relay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/bundle"
	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/pqxdh"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/memmailbox"
	"github.com/moat-im/moat/server/store/prekey/memprekey"
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// logBuffer collects log output, safe for concurrent writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var (
	tenantA = [16]byte{0x7a, 1}
	tenantB = [16]byte{0x7b, 2}
)

// world is a relay on loopback HTTP with an in-memory directory and
// stores.
type world struct {
	t     testing.TB
	dir   *relay.MemoryDirectory
	mbox  mailbox.Store
	key   *keys.RelaySigningPrivateKey
	relay *relay.Relay
	srv   *httptest.Server
	logs  *logBuffer
	opts  relay.Options
	n     byte
}

type worldOptions struct {
	limits relay.Limits
	mbox   mailbox.Store
	// issuers enables anonymous tokens.
	issuers deliverytoken.IssuerKeys
	// verifiers and spent replace the in-memory token stores.
	verifiers relay.Verifiers
	spent     deliverytoken.SpentStore
	// logger replaces the test's debug-level log buffer (benchmarks).
	logger *slog.Logger
}

// unlimited lifts every rate limit a test does not set.
func unlimited(l relay.Limits) relay.Limits {
	off := relay.Rate{PerSecond: -1}
	for _, r := range []*relay.Rate{&l.PerAddress, &l.Challenge, &l.PerDevice, &l.PerTenant,
		&l.SendPerAddress, &l.SendPerToken, &l.SendPerMailbox, &l.BundlePerTarget} {
		if *r == (relay.Rate{}) {
			*r = off
		}
	}
	return l
}

func newWorld(t testing.TB, o worldOptions) *world {
	t.Helper()
	w := &world{t: t, dir: relay.NewMemoryDirectory(), logs: &logBuffer{}}
	w.key = must(keys.GenerateRelaySigningKey(rand.Reader))
	w.mbox = o.mbox
	if w.mbox == nil {
		w.mbox = must(memmailbox.New(memmailbox.Options{}))
	}
	w.opts = relay.Options{
		Name: "relay.test", SigningKey: w.key, Directory: w.dir, Mailboxes: w.mbox,
		Prekeys: memprekey.New(0), Issuers: o.issuers, Limits: unlimited(o.limits),
		Verifiers: o.verifiers, Spent: o.spent,
		Logger: slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if o.logger != nil {
		w.opts.Logger = o.logger
	}
	w.start()
	t.Cleanup(func() { w.srv.Close(); w.relay.Close() })
	return w
}

func (w *world) start() {
	w.relay = must(relay.New(w.opts))
	w.srv = httptest.NewUnstartedServer(w.relay.Handler())
	w.srv.Config.Addr = "relay.test"
	w.srv.Start()
}

// device is a device of the test: its keys, its private prekeys, its
// token key and its relay client.
type device struct {
	tenant, id, user [16]byte
	idk              *keys.DeviceIdentityPrivate
	spk              *keys.SignedPrekeyPrivateKey
	opks             map[uint32]*keys.OneTimePrekeyPrivateKey
	kems             map[uint32]*keys.KEMPrekeyPrivateKey
	ssk              *keys.SealedSenderPrivateKey
	upload           *bundle.Upload
	tokens           *deliverytoken.TokenKey
	c                *relay.Client
}

func (d *device) mailbox() sealed.MailboxID { return sealed.NewMailboxID(d.tenant, d.id) }

// newDevice certifies a device of tenant in the directory, with nOPK
// one-time X25519 prekeys, nKEM one-time KEM prekeys and a last-resort one.
func (w *world) newDevice(tenant [16]byte, nOPK, nKEM int) *device {
	w.n++
	return w.newDeviceID(tenant, [16]byte{0xde, w.n}, nOPK, nKEM)
}

// newDeviceID is newDevice with a given device id.
func (w *world) newDeviceID(tenant, id [16]byte, nOPK, nKEM int) *device {
	w.n++
	d := &device{tenant: tenant, id: id, user: [16]byte{0xa0, w.n},
		opks: map[uint32]*keys.OneTimePrekeyPrivateKey{}, kems: map[uint32]*keys.KEMPrekeyPrivateKey{}}
	d.idk = must(keys.GenerateDeviceIdentity(rand.Reader))
	w.dir.Add(tenant, d.id, d.user, d.idk.Public(), time.Now().Add(24*time.Hour))
	now := time.Now().Truncate(time.Second).UTC()
	d.spk = must(keys.GenerateSignedPrekeyKey(rand.Reader))
	d.ssk = must(keys.GenerateSealedSenderKey(rand.Reader))
	u := &bundle.Upload{
		SignedPrekey:    keys.SignSignedPrekey(1, now, d.spk.Public(), d.idk.Signing),
		SealedSenderKey: keys.SignSealedSenderKey(3, now, now.Add(14*24*time.Hour), d.ssk.Public(), d.idk.Signing),
		KeyPackages:     testKeyPackages(d.idk.Signing, 2),
	}
	for i := range nOPK {
		k := must(keys.GenerateOneTimePrekey(rand.Reader))
		d.opks[uint32(10+i)] = k
		u.OneTimePrekeys = append(u.OneTimePrekeys, keys.SignOneTimePrekey(uint32(10+i), k.Public(), d.idk.Signing))
	}
	for i := range nKEM + 1 {
		k := must(keys.GenerateKEMPrekeyKey(rand.Reader))
		d.kems[uint32(1000+i)] = k
		u.KEMPrekeys = append(u.KEMPrekeys, keys.SignKEMPrekey(uint32(1000+i), now, i == nKEM, k.Public(), d.idk.Signing))
	}
	d.upload = u
	d.tokens = must(deliverytoken.GenerateTokenKey(nil))
	d.c = w.client(d)
	return d
}

func (w *world) client(d *device) *relay.Client {
	return &relay.Client{BaseURL: w.srv.URL, Name: "relay.test", RelayKey: w.key.Public(),
		Device: &relay.DeviceCredentials{Tenant: d.tenant, Device: d.id, Key: d.idk.Signing}}
}

// anon is a client with no device, for sends.
func (w *world) anon() *relay.Client {
	return &relay.Client{BaseURL: w.srv.URL, RelayKey: w.key.Public()}
}

// publish uploads d's prekeys.
func (w *world) publish(d *device) {
	w.t.Helper()
	ok(w.t, d.c.UploadPrekeys(context.Background(), must(d.upload.Marshal())))
}

// token registers a MAC delivery token of d for contact and returns the
// SendAuthorization a contact presents.
func (w *world) token(d *device, contact byte) []byte {
	w.t.Helper()
	cid := deliverytoken.ContactID{contact}
	ok(w.t, d.c.AddVerifier(context.Background(), d.tokens.Verifier(d.mailbox(), cid, 0)))
	return macAuth(d.tokens.Token(d.mailbox(), cid, 0))
}

func macAuth(tok deliverytoken.Token) []byte {
	return must((&deliverytoken.SendAuthorization{Kind: deliverytoken.KindMAC, MAC: tok}).Marshal())
}

// envelope seals content from d to r's sealed-sender key.
func envelope(t testing.TB, from, to *device, content []byte) []byte {
	t.Helper()
	rec := must(sealed.NewRecipient(to.mailbox(), to.idk.Public().Signing, to.upload.SealedSenderKey, time.Now()))
	return must(rec.Seal(&sealed.Message{MessageID: sealed.NewMessageID(), TTL: 3600,
		Sender:    sealed.Sender{Tenant: from.tenant, User: from.user, Device: from.id, Serial: 1, Identity: from.idk.Public()},
		Timestamp: time.Now(), ContentType: sealed.ContentRatchetMessage, Content: content}))
}

// responderKeys returns the private prekeys an initial message names.
func (d *device) responderKeys(m *pqxdh.InitialMessage) pqxdh.ResponderKeys {
	k := pqxdh.ResponderKeys{SignedPrekey: d.spk, KEMPrekey: d.kems[m.KEMPrekeyID]}
	if m.OneTimePrekeyID != nil {
		k.OneTimePrekey = d.opks[*m.OneTimePrekeyID]
	}
	return k
}

func statusOf(err error) int {
	var ae *relay.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func wantStatus(t testing.TB, err error, code int) {
	t.Helper()
	if got := statusOf(err); got != code {
		t.Fatalf("got %v (status %d), want status %d", err, got, code)
	}
}

// raw sends a request and returns the status, Retry-After and body.
func raw(t testing.TB, req *http.Request) (int, string, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	ok(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), b
}

// session authenticates d for purpose over raw HTTP and returns the
// Authorization header value.
func (w *world) session(d *device, p deviceauth.Purpose) string {
	w.t.Helper()
	resp := w.authResponse(d, p)
	code, _, body := raw(w.t, must(http.NewRequest(http.MethodPost, w.srv.URL+"/relay/v1/auth/session?purpose="+relay.PurposeName(p), bytes.NewReader(resp))))
	if code != http.StatusOK {
		w.t.Fatalf("session: %d %s", code, body)
	}
	var sr relay.SessionResponse
	ok(w.t, json.Unmarshal(body, &sr))
	return relay.AuthScheme + " " + sr.Token
}

// authResponse fetches a challenge for p and answers it as d.
func (w *world) authResponse(d *device, p deviceauth.Purpose) []byte {
	w.t.Helper()
	code, _, chal := raw(w.t, must(http.NewRequest(http.MethodPost, w.srv.URL+"/relay/v1/auth/challenge?purpose="+relay.PurposeName(p), nil)))
	if code != http.StatusOK {
		w.t.Fatalf("challenge: %d", code)
	}
	return must(deviceauth.Respond(chal, "relay.test", p, d.tenant, d.id, d.idk.Signing, nil))
}

// call sends method path with the Authorization value auth ("" for none)
// and body, and returns the status.
func (w *world) call(method, path, auth string, body []byte) int {
	w.t.Helper()
	req := must(http.NewRequest(method, w.srv.URL+path, bytes.NewReader(body)))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	code, _, _ := raw(w.t, req)
	return code
}

func farFuture() time.Time { return time.Now().Add(24 * time.Hour) }

func mailboxHeader(env []byte) (sealed.MailboxID, error) {
	h, err := sealed.ParseHeader(env)
	if err != nil {
		return sealed.MailboxID{}, err
	}
	return h.Mailbox, nil
}

func mailboxText(d *device) string { return relay.MailboxText(d.mailbox()) }
