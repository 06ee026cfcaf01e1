package service_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/store/badgerstore"
	"github.com/moat-im/moat/keyserver/store/memstore"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

const maxAge = time.Hour

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

// clock is a settable clock shared by the service, its witnesses and the
// clients.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testWitness is a real crypto/tlog witness behind a minimal HTTP handler
// implementing C2SP tlog-witness add-checkpoint, as cmd/moat-witness does.
type testWitness struct {
	name string
	w    *tlog.Witness
	keys []*tlog.WitnessPrivateKey
	srv  *httptest.Server
	// down makes the handler answer 503, and calls counts requests.
	mu    sync.Mutex
	down  bool
	calls int
}

func newTestWitness(t testing.TB, rnd io.Reader, name string, origins map[string]*keys.LogPublicKey, now func() time.Time) *testWitness {
	ed := must(tlog.GenerateWitnessKey(rnd, name, tlog.CosignatureEd25519))
	pq := must(tlog.GenerateWitnessKey(rnd, name, tlog.CosignatureMLDSA44))
	tw := &testWitness{name: name, keys: []*tlog.WitnessPrivateKey{ed, pq}}
	tw.w = must(tlog.NewWitness(tlog.WitnessConfig{Keys: tw.keys, Logs: origins, Store: tlog.NewMemoryWitnessStore()}))
	tw.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw.mu.Lock()
		tw.calls++
		down := tw.down
		tw.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.Method != http.MethodPost || r.URL.Path != "/add-checkpoint" {
			http.NotFound(w, r)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		req, err := tlog.ParseAddCheckpointRequest(body)
		if err != nil {
			http.Error(w, err.Error(), tlog.StatusCode(err))
			return
		}
		lines, err := tw.w.AddCheckpoint(r.Context(), req, now())
		if ce, isConflict := errors.AsType[*tlog.ConflictError](err); isConflict {
			w.Header().Set("Content-Type", tlog.ConflictContentType)
			w.WriteHeader(http.StatusConflict)
			w.Write(ce.Body())
			return
		}
		if err != nil {
			http.Error(w, err.Error(), tlog.StatusCode(err))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(lines)
	}))
	t.Cleanup(tw.srv.Close)
	return tw
}

func (tw *testWitness) setDown(d bool) {
	tw.mu.Lock()
	tw.down = d
	tw.mu.Unlock()
}

func (tw *testWitness) key() org.WitnessKey {
	return org.WitnessKey{Name: tw.name, Ed25519: tw.keys[0].Public().Bytes(), MLDSA44: tw.keys[1].Public().Bytes()}
}

func (tw *testWitness) client(t testing.TB) service.WitnessClient {
	return must(service.NewHTTPWitness(tw.srv.URL, nil))
}

// cosignAs adds tw's cosignatures of note's checkpoint at time at, as a
// colluding witness would, without its state machine.
func (tw *testWitness) cosignAs(t testing.TB, note []byte, at time.Time) []byte {
	t.Helper()
	cp := noteCheckpoint(t, note)
	for _, k := range tw.keys {
		cs := must(tlog.CosignCheckpoint(k, cp, at))
		note = must(tlog.AddCosignatures(note, must(cs.Marshal())))
	}
	return note
}

func noteCheckpoint(t testing.TB, note []byte) *tlog.Checkpoint {
	t.Helper()
	i := bytes.Index(note, []byte("\n\n"))
	return must(tlog.ParseCheckpoint(note[:i+1]))
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

// world is a running directory service with one tenant (or more), real
// witnesses behind HTTP, and admins.
type world struct {
	t         testing.TB
	clk       *clock
	rnd       *rand.ChaCha8
	svc       *service.Service
	srv       *httptest.Server
	tenant    org.TenantID
	origin    string
	keys      *service.TenantKeys
	admins    []*org.AdminPrivateKey
	witnesses []*testWitness
	quorum    int
	st        store.DirectoryStore
	dir       string // badger directory, "" for memstore
	keyFile   string // the tenant's key file (service.FileKeyStore)
	logs      *logBuffer
	opts      worldOptions
	devices   []*device
}

type worldOptions struct {
	badger    bool
	witnesses int // default 3
	quorum    int // default 2
	// extra witnesses are configured (their URLs given to the service)
	// but not in the tenant's first trust bundle.
	extra  int
	seed   uint64
	limits service.Limits
	// wrap wraps the store (for fault injection).
	wrap func(store.DirectoryStore) store.DirectoryStore
	// noKeyStore configures no key store (rotations answer 501).
	noKeyStore bool
	// tenant, if not zero, is the tenant id (default: from the seed).
	tenant org.TenantID
	// orgConfig is the new tenant's org.Config.
	orgConfig org.Config
}

func newWorld(t testing.TB, o worldOptions) *world {
	t.Helper()
	if o.witnesses == 0 {
		o.witnesses, o.quorum = 3, 2
	}
	if o.limits.PerIP == (service.Rate{}) {
		o.limits.PerIP = service.Rate{PerSecond: 1e6, Burst: 1e6}
	}
	var seed [32]byte
	copy(seed[:], fmt.Sprintf("service test %d", o.seed))
	w := &world{t: t, clk: &clock{t: t0}, rnd: rand.NewChaCha8(seed), quorum: o.quorum, logs: &logBuffer{}, opts: o}
	w.tenant = org.TenantID{0x7e, byte(o.seed), 0x01}
	if !o.tenant.IsZero() {
		w.tenant = o.tenant
	}
	w.origin = service.Origin("moat.example", w.tenant)
	fk := must(service.GenerateFileKeys(w.rnd))
	w.keys = fk.TenantKeys()
	w.dir = t.TempDir()
	w.keyFile = w.dir + "/keys.json"
	ok(t, service.WriteKeyFile(w.keyFile, w.tenant, fk))
	for i := range 3 {
		scheme := org.AdminHybrid
		if i%2 == 1 {
			scheme = org.AdminEd25519
		}
		w.admins = append(w.admins, must(org.GenerateAdminKey(w.rnd, org.AdminID{0xad, byte(i + 1)}, scheme)))
	}
	logs := map[string]*keys.LogPublicKey{w.origin: w.keys.Log.Public()}
	for i := range o.witnesses + o.extra {
		w.witnesses = append(w.witnesses, newTestWitness(t, w.rnd, fmt.Sprintf("witness%d.example/w", i+1), logs, w.clk.Now))
	}
	w.start()
	return w
}

func (w *world) adminKeys() []*org.AdminKey {
	var ks []*org.AdminKey
	for _, a := range w.admins {
		ks = append(ks, a.Public())
	}
	return ks
}

func (w *world) witnessSet() org.WitnessSet {
	ws := org.WitnessSet{Quorum: w.quorum}
	for _, tw := range w.witnesses[:w.opts.witnesses] {
		ws.Witnesses = append(ws.Witnesses, tw.key())
	}
	return ws
}

func (w *world) openStore() store.DirectoryStore {
	var s store.DirectoryStore
	if w.opts.badger {
		s = must(badgerstore.Open(context.Background(), badgerstore.Options{
			Dir: w.dir + "/db", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}))
	} else {
		s = memstore.New()
	}
	if w.opts.wrap != nil {
		s = w.opts.wrap(s)
	}
	return s
}

func (w *world) tenantConfig() service.TenantConfig {
	var wcs []service.WitnessClient
	for _, tw := range w.witnesses {
		wcs = append(wcs, tw.client(w.t))
	}
	// The keys as the key store keeps them: rotated keys included.
	_, fk, err := service.ReadKeyFile(w.keyFile)
	ok(w.t, err)
	tc := service.TenantConfig{
		ID: w.tenant, Store: w.st, Keys: fk.TenantKeys(), Witnesses: wcs,
		KeyStore: &service.FileKeyStore{Path: w.keyFile, Tenant: w.tenant},
		Create:   &service.CreateParams{Origin: w.origin, Admins: w.adminKeys(), Threshold: 2, Witnesses: w.witnessSet(), Config: w.opts.orgConfig},
	}
	if w.opts.noKeyStore {
		tc.KeyStore = nil
	}
	return tc
}

// start opens the store (a new memstore, or the badger directory again)
// and the service, and cosigns what it holds.
func (w *world) start() {
	t := w.t
	t.Helper()
	if w.st == nil || w.opts.badger {
		w.st = w.openStore()
	}
	w.svc = must(service.New(context.Background(), service.Options{
		Tenants: []service.TenantConfig{w.tenantConfig()},
		Logger:  slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:     w.clk.Now, WitnessBackoff: time.Millisecond, WitnessAttempts: 3, WitnessTimeout: 5 * time.Second,
		Limits: w.opts.limits,
	}))
	w.serve(w.svc)
	if err := w.svc.Cosign(context.Background()); err != nil {
		t.Fatalf("first cosigning: %v", err)
	}
}

// stop closes the HTTP server and the store.
func (w *world) stop() {
	w.srv.Close()
	ok(w.t, w.st.Close())
}

func (w *world) ten() *service.Tenant { return w.svc.Tenant(w.tenant) }

// publish publishes an epoch a minute later and requires it cosigned.
func (w *world) publish() *service.Epoch {
	w.t.Helper()
	w.clk.Advance(time.Minute)
	ep, err := w.ten().PublishEpoch(context.Background(), w.clk.Now())
	ok(w.t, err)
	if !ep.Cosigned {
		w.t.Fatalf("epoch %d not cosigned: %v", ep.Entry.Epoch, ep.CosignError)
	}
	return ep
}

// api returns an HTTP client of the service, signing as the first admin.
func (w *world) api() *service.Client {
	return &service.Client{BaseURL: w.srv.URL, Tenant: w.tenant, Admin: w.admins[0], Now: w.clk.Now, Rand: w.rnd}
}

// device is an enrolled device with its API client.
type device struct {
	user org.UserID
	id   *keys.DeviceIdentityPrivate
	mls  *org.MLSSignatureKey
	cert *org.DeviceCertificate
	code *org.EnrolmentCode
	api  *service.Client
	kt   *kt.Client
}

func (w *world) addUser(name string) org.UserID {
	w.t.Helper()
	var out service.OKResponse
	ok(w.t, w.api().AdminOp(context.Background(), "add-user", service.AddUserRequest{DisplayName: name}, &out))
	return must(service.ParseUserID(out.User))
}

func (w *world) newDeviceKeys(user org.UserID) *device {
	id := must(keys.GenerateDeviceIdentity(w.rnd))
	mk := must(keys.GenerateIdentitySigningKey(w.rnd))
	mls := must(org.NewMLSSignatureKey(org.MLSSchemeEd25519, mk.Public().Raw()))
	return &device{user: user, id: id, mls: mls}
}

func (w *world) issueCode(user org.UserID) *org.EnrolmentCode {
	w.t.Helper()
	var out service.IssueCodeResponse
	ok(w.t, w.api().AdminOp(context.Background(), "issue-code", service.IssueCodeRequest{User: user.String()}, &out))
	return must(org.ParseEnrolmentCodeText(out.Code))
}

// enrol enrols a new device of user through the API, with approvals made
// by approve (nil for none), and gives it a kt client bootstrapped from
// the answer (kt.Enrol: the trust bundle checked against its code, the
// certificate against its keys, the time floor, the first checkpoint).
func (w *world) enrol(user org.UserID, approve func(*org.EnrolmentRequest) []*org.Approval) (*device, error) {
	d := w.newDeviceKeys(user)
	d.code = w.issueCode(user)
	req := must(org.NewEnrolmentRequest(d.code, d.id, d.mls))
	var aps []*org.Approval
	if approve != nil {
		aps = approve(req)
	}
	res, err := w.api().Enrol(context.Background(), d.code, req, aps...)
	if err != nil {
		return nil, err
	}
	if d.kt, d.cert, err = kt.Enrol(d.code, req, res.Enrolment(), maxAge, 0, w.clk.Now()); err != nil {
		return nil, err
	}
	d.api = &service.Client{BaseURL: w.srv.URL, Tenant: w.tenant, Now: w.clk.Now, Rand: w.rnd,
		Device: &service.DeviceCredentials{User: user, Device: d.cert.Device, Key: d.id.Signing}}
	w.devices = append(w.devices, d)
	return d, nil
}

func (w *world) mustEnrol(user org.UserID) *device {
	w.t.Helper()
	return must(w.enrol(user, nil))
}

// lookup looks user up as d and verifies the answer.
func (w *world) lookup(d *device, user org.UserID) (*kt.LookupResult, error) {
	w.t.Helper()
	resp, err := d.api.Lookup(context.Background(), user, d.kt.TreeSize())
	if err != nil {
		return nil, err
	}
	return d.kt.VerifyLookup(w.tenant, user, resp, w.clk.Now())
}

func statusOf(err error) int {
	if ae, isAPI := errors.AsType[*service.APIError](err); isAPI {
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

// rawRequest sends a request to the service and returns status and body.
func rawRequest(t testing.TB, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	ok(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newServer(t testing.TB, svc *service.Service) *httptest.Server {
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return srv
}

// serve serves svc over a new HTTP server, closing the previous one, and
// points every device at it.
func (w *world) serve(svc *service.Service) {
	if w.srv != nil {
		w.srv.Close()
	}
	w.svc = svc
	w.srv = newServer(w.t, svc)
	for _, d := range w.devices {
		d.api.BaseURL = w.srv.URL
	}
}
