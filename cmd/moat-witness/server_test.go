package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
)

// fataler is the part of testing.TB that testLog needs, so that
// testscript commands can drive a testLog too.
type fataler interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// testLog is a real Moat log: a crypto/tlog Tree and a hybrid log key.
type testLog struct {
	origin string
	key    *keys.LogPrivateKey
	tree   *tlog.Tree
}

func newTestLog(t *testing.T, origin string) *testLog {
	t.Helper()
	k, err := keys.GenerateLogKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := tlog.NewTree(context.Background(), tlog.NewMemoryNodeStore(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{origin: origin, key: k, tree: tr}
}

// grow appends n leaves tagged with tag and returns the new size.
func (l *testLog) grow(t *testing.T, tag string, n int) uint64 {
	t.Helper()
	var leaves [][]byte
	for i := range n {
		leaves = append(leaves, fmt.Appendf(nil, "%s leaf %d", tag, i))
	}
	if _, err := l.tree.Append(context.Background(), leaves...); err != nil {
		t.Fatal(err)
	}
	return l.tree.Size()
}

// note returns the log's signed checkpoint at size.
func (l *testLog) note(t fataler, size uint64) []byte {
	t.Helper()
	root, err := l.tree.Root(context.Background(), size)
	if err != nil {
		t.Fatal(err)
	}
	n, err := tlog.SignCheckpoint(&tlog.Checkpoint{Origin: l.origin, Size: size, Root: root}, l.key)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// request returns an add-checkpoint body for the checkpoint at size with a
// consistency proof from oldSize.
func (l *testLog) request(t fataler, oldSize, size uint64) []byte {
	t.Helper()
	return l.requestFor(t, oldSize, size, l.note(t, size))
}

func (l *testLog) requestFor(t fataler, oldSize, size uint64, note []byte) []byte {
	t.Helper()
	var proof []tlog.Hash
	if oldSize > 0 && oldSize < size {
		var err error
		if proof, err = l.tree.ConsistencyProof(context.Background(), oldSize, size); err != nil {
			t.Fatal(err)
		}
	}
	b, err := (&tlog.AddCheckpointRequest{OldSize: oldSize, Proof: proof, Checkpoint: note}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newTestServer returns a witness with Ed25519 and ML-DSA-44 keys over a
// file store in a temporary directory, serving logs.
func newTestServer(t *testing.T, logs ...*testLog) (*server, *tlog.Witness, []*tlog.WitnessPublicKey) {
	t.Helper()
	store, err := openFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return newTestServerWithStore(t, store, logs...)
}

func newTestServerWithStore(t *testing.T, store tlog.WitnessStore, logs ...*testLog) (*server, *tlog.Witness, []*tlog.WitnessPublicKey) {
	t.Helper()
	var ks []*tlog.WitnessPrivateKey
	for _, typ := range []tlog.CosignatureType{tlog.CosignatureEd25519, tlog.CosignatureMLDSA44} {
		k, err := tlog.GenerateWitnessKey(rand.Reader, "witness.example/test", typ)
		if err != nil {
			t.Fatal(err)
		}
		ks = append(ks, k)
	}
	cfg := tlog.WitnessConfig{Keys: ks, Logs: map[string]*keys.LogPublicKey{}, Store: store}
	var origins []string
	for _, l := range logs {
		cfg.Logs[l.origin] = l.key.Public()
		origins = append(origins, l.origin)
	}
	w, err := tlog.NewWitness(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return newServer(w, origins, slog.New(slog.NewTextHandler(io.Discard, nil))), w, w.PublicKeys()
}

type response struct {
	code        int
	contentType string
	body        []byte
}

func do(t *testing.T, h http.Handler, method, path string, body []byte) response {
	t.Helper()
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return response{rec.Code, rec.Header().Get("Content-Type"), rec.Body.Bytes()}
}

func post(t *testing.T, h http.Handler, body []byte) response {
	t.Helper()
	return do(t, h, http.MethodPost, "/add-checkpoint", body)
}

func mustStatus(t *testing.T, r response, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d; body %q", r.code, code, r.body)
	}
}

// checkCosigned checks that body carries a valid cosignature from every
// witness key on the checkpoint note, and that a client that requires this
// witness accepts the note with them.
func checkCosigned(t *testing.T, l *testLog, ws []*tlog.WitnessPublicKey, note, body []byte) {
	t.Helper()
	c, err := tlog.OpenCheckpoint(note, l.origin, l.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := tlog.ParseCosignatures(body)
	if err != nil {
		t.Fatalf("response body %q: %v", body, err)
	}
	if len(cs) != len(ws) {
		t.Fatalf("%d cosignatures, want %d", len(cs), len(ws))
	}
	for i, k := range ws {
		if err := tlog.VerifyCosignature(k, c, cs[i]); err != nil {
			t.Fatalf("cosignature %d (%v): %v", i, k.Type(), err)
		}
		if d := time.Since(cs[i].Time()); d < -time.Minute || d > time.Minute {
			t.Fatalf("cosignature time %v is not now", cs[i].Time())
		}
	}
	v, err := tlog.NewVerifier(tlog.VerifierConfig{Origin: l.origin, LogKey: l.key.Public(), Witnesses: ws, Quorum: 1, MaxAge: time.Hour, NotBefore: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	cosigned, err := tlog.AddCosignatures(note, body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyCheckpoint(cosigned, nil, time.Now()); err != nil {
		t.Fatalf("client rejects the cosigned checkpoint: %v", err)
	}
}

func TestAddCheckpointChain(t *testing.T) {
	l := newTestLog(t, "log.example/chain")
	s, _, ws := newTestServer(t, l)
	h := s.handler()

	var old uint64
	for i, n := range []int{1, 2, 5, 0, 16, 1} {
		size := l.grow(t, fmt.Sprint(i), n)
		note := l.note(t, size)
		r := post(t, h, l.requestFor(t, old, size, note))
		mustStatus(t, r, http.StatusOK)
		if !strings.HasPrefix(r.contentType, "text/plain") {
			t.Errorf("Content-Type %q", r.contentType)
		}
		checkCosigned(t, l, ws, note, r.body)
		old = size
	}

	// Re-cosigning the same checkpoint (old size = size, no proof) is how
	// a log keeps its checkpoint fresh without growing.
	r := post(t, h, l.request(t, old, old))
	mustStatus(t, r, http.StatusOK)

	// The monitoring endpoint serves the latest cosigned checkpoint.
	mon := do(t, h, http.MethodGet, "/"+originFile(l.origin)+"/checkpoint", nil)
	mustStatus(t, mon, http.StatusOK)
	c, err := tlog.OpenCheckpoint(mon.body, l.origin, l.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != old {
		t.Fatalf("monitoring checkpoint size %d, want %d", c.Size, old)
	}
	v, _ := tlog.NewVerifier(tlog.VerifierConfig{Origin: l.origin, LogKey: l.key.Public(), Witnesses: ws, Quorum: 1, MaxAge: time.Hour, NotBefore: time.Now().Add(-time.Hour)})
	if _, err := v.VerifyCheckpoint(mon.body, nil, time.Now()); err != nil {
		t.Fatalf("monitoring checkpoint does not carry the cosignatures: %v", err)
	}
}

func TestAddCheckpointConflict(t *testing.T) {
	l := newTestLog(t, "log.example/conflict")
	s, _, _ := newTestServer(t, l)
	h := s.handler()
	n1 := l.grow(t, "a", 3)
	mustStatus(t, post(t, h, l.request(t, 0, n1)), http.StatusOK)
	n2 := l.grow(t, "b", 4)
	mustStatus(t, post(t, h, l.request(t, n1, n2)), http.StatusOK)
	n3 := l.grow(t, "c", 2)

	for _, old := range []uint64{0, n1, n3} { // stale, stale, ahead
		r := post(t, h, l.request(t, old, n3))
		mustStatus(t, r, http.StatusConflict)
		if r.contentType != tlog.ConflictContentType {
			t.Errorf("Content-Type %q, want %q", r.contentType, tlog.ConflictContentType)
		}
		if want := fmt.Sprintf("%d\n", n2); string(r.body) != want {
			t.Errorf("409 body %q, want %q", r.body, want)
		}
		if got, err := tlog.ParseConflictBody(r.body); err != nil || got != n2 {
			t.Errorf("ParseConflictBody = %d, %v", got, err)
		}
	}
	// The log retries with the witness's size and succeeds.
	mustStatus(t, post(t, h, l.request(t, n2, n3)), http.StatusOK)
}

func TestAddCheckpointBadSignature(t *testing.T) {
	l := newTestLog(t, "log.example/sig")
	s, _, _ := newTestServer(t, l)
	h := s.handler()
	size := l.grow(t, "a", 3)

	// Signed by another key under the same origin: no trusted signature.
	impostor := newTestLog(t, l.origin)
	impostor.grow(t, "a", 3)
	mustStatus(t, post(t, h, impostor.request(t, 0, size)), http.StatusForbidden)

	// A trusted key's line that does not verify, for each of the two.
	note := l.note(t, size)
	for line := range 2 {
		mustStatus(t, post(t, h, l.requestFor(t, 0, size, corruptSignature(t, note, line))), http.StatusForbidden)
	}
	// Only the Ed25519 line: the hybrid policy needs both.
	edOnly := bytes.Clone(note)
	last := bytes.LastIndex(edOnly[:len(edOnly)-1], []byte("\n"))
	edOnly = edOnly[:last+1]
	mustStatus(t, post(t, h, l.requestFor(t, 0, size, edOnly)), http.StatusForbidden)

	// None of these were recorded.
	mustStatus(t, post(t, h, l.request(t, 0, size)), http.StatusOK)
}

func TestAddCheckpointUnknownOrigin(t *testing.T) {
	l := newTestLog(t, "log.example/known")
	other := newTestLog(t, "log.example/unknown")
	s, _, _ := newTestServer(t, l)
	h := s.handler()
	size := other.grow(t, "a", 2)
	mustStatus(t, post(t, h, other.request(t, 0, size)), http.StatusNotFound)
	mustStatus(t, do(t, h, http.MethodGet, "/"+originFile(other.origin)+"/checkpoint", nil), http.StatusNotFound)
	// Known, but never cosigned.
	mustStatus(t, do(t, h, http.MethodGet, "/"+originFile(l.origin)+"/checkpoint", nil), http.StatusNotFound)
	mustStatus(t, do(t, h, http.MethodGet, "/not-a-hash/checkpoint", nil), http.StatusNotFound)
}

func TestAddCheckpointMalformed(t *testing.T) {
	l := newTestLog(t, "log.example/malformed")
	s, _, _ := newTestServer(t, l)
	h := s.handler()
	size := l.grow(t, "a", 4)
	good := l.request(t, 0, size)
	note := l.note(t, size)
	for name, body := range map[string][]byte{
		"empty":          nil,
		"garbage":        []byte("hello\n"),
		"leading zero":   append([]byte("old 00\n\n"), note...),
		"no blank line":  append([]byte("old 0\n"), note...),
		"bad proof line": append([]byte("old 0\nnot base64\n\n"), note...),
		"no signatures":  bytes.Replace(good, []byte("\n\n— "), []byte("\n— "), 1),
		"old > size":     append(fmt.Appendf(nil, "old %d\n\n", size+1), note...),
	} {
		t.Run(name, func(t *testing.T) {
			mustStatus(t, post(t, h, body), http.StatusBadRequest)
		})
	}
	mustStatus(t, post(t, h, good), http.StatusOK)
	// Wrong methods.
	mustStatus(t, do(t, h, http.MethodGet, "/add-checkpoint", nil), http.StatusMethodNotAllowed)
	mustStatus(t, do(t, h, http.MethodPost, "/"+originFile(l.origin)+"/checkpoint", nil), http.StatusMethodNotAllowed)
}

func TestAddCheckpointTooLarge(t *testing.T) {
	l := newTestLog(t, "log.example/large")
	s, _, _ := newTestServer(t, l)
	h := s.handler()
	big := bytes.Repeat([]byte("a"), maxBodySize+1)

	// With a Content-Length: refused before reading.
	mustStatus(t, post(t, h, big), http.StatusRequestEntityTooLarge)

	// Chunked, without a Content-Length: refused by the MaxBytesReader.
	r := httptest.NewRequest(http.MethodPost, "/add-checkpoint", io.MultiReader(bytes.NewReader(big)))
	r.ContentLength = -1
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked oversize body: status %d", rec.Code)
	}

	// At the limit is read and parsed (and is malformed).
	mustStatus(t, post(t, h, big[:maxBodySize]), http.StatusBadRequest)
}

// corruptSignature flips a bit in the signature of the i-th signature line
// of a signed note, keeping its name and key ID.
func corruptSignature(t *testing.T, note []byte, i int) []byte {
	t.Helper()
	text, sigs, ok := bytes.Cut(note, []byte("\n\n"))
	if !ok {
		t.Fatal("not a note")
	}
	lines := strings.SplitAfter(string(sigs), "\n")
	prefix, b64, _ := strings.Cut(lines[i], " ")
	name, b64, _ := strings.Cut(b64, " ")
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(b64, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 1 // past the 4-byte key ID
	lines[i] = prefix + " " + name + " " + base64.StdEncoding.EncodeToString(raw) + "\n"
	return append(append(text, "\n\n"...), strings.Join(lines, "")...)
}

// TestSplitView: once the witness cosigned root R at size N, it refuses
// any other root at size N, whatever old size the log claims.
func TestSplitView(t *testing.T) {
	l := newTestLog(t, "log.example/split")
	s, _, _ := newTestServer(t, l)
	h := s.handler()
	n := l.grow(t, "honest", 5)
	mustStatus(t, post(t, h, l.request(t, 0, n)), http.StatusOK)

	// The same log key signs a second tree of the same size.
	fork := &testLog{origin: l.origin, key: l.key}
	fork.tree, _ = tlog.NewTree(context.Background(), tlog.NewMemoryNodeStore(), 0)
	if fork.grow(t, "evil", 5) != n {
		t.Fatal("fork size")
	}
	forkNote := fork.note(t, n)
	if bytes.Equal(forkNote, l.note(t, n)) {
		t.Fatal("fork has the same root")
	}
	mustStatus(t, post(t, h, fork.requestFor(t, n, n, forkNote)), http.StatusUnprocessableEntity)
	r := post(t, h, fork.requestFor(t, 0, n, forkNote))
	mustStatus(t, r, http.StatusConflict)
	if string(r.body) != fmt.Sprintf("%d\n", n) {
		t.Fatalf("409 body %q", r.body)
	}
	// Nor does a larger forked tree get through with the fork's proof.
	n2 := fork.grow(t, "evil more", 3)
	mustStatus(t, post(t, h, fork.request(t, n, n2)), http.StatusUnprocessableEntity)

	// The honest log carries on.
	mustStatus(t, post(t, h, l.request(t, n, n)), http.StatusOK)
	n3 := l.grow(t, "honest more", 3)
	mustStatus(t, post(t, h, l.request(t, n, n3)), http.StatusOK)

	m := do(t, h, http.MethodGet, "/metrics", nil)
	mustStatus(t, m, http.StatusOK)
	for _, want := range []string{
		`moat_witness_inconsistent_total{origin="log.example/split"} 2`,
		`moat_witness_conflicts_total{origin="log.example/split"} 1`,
		`moat_witness_cosignatures_total{origin="log.example/split"} 3`,
		fmt.Sprintf(`moat_witness_cosigned_tree_size{origin="log.example/split"} %d`, n3),
		`moat_witness_http_requests_total{code="422",handler="POST /add-checkpoint"} 2`,
		`moat_witness_http_requests_total{code="409",handler="POST /add-checkpoint"} 1`,
		`moat_witness_http_requests_total{code="200",handler="POST /add-checkpoint"} 3`,
	} {
		if !bytes.Contains(m.body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestRestart checks that the witnessed state survives a new process over
// the same directory.
func TestRestart(t *testing.T) {
	l := newTestLog(t, "log.example/restart")
	dir := t.TempDir()
	st1, err := openFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	s1, _, _ := newTestServerWithStore(t, st1, l)
	n := l.grow(t, "a", 7)
	mustStatus(t, post(t, s1.handler(), l.request(t, 0, n)), http.StatusOK)

	st2, err := openFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	s2, _, _ := newTestServerWithStore(t, st2, l)
	r := post(t, s2.handler(), l.request(t, 0, n))
	mustStatus(t, r, http.StatusConflict)
	if string(r.body) != fmt.Sprintf("%d\n", n) {
		t.Fatalf("409 body %q", r.body)
	}
	n2 := l.grow(t, "b", 1)
	mustStatus(t, post(t, s2.handler(), l.request(t, n, n2)), http.StatusOK)
}

func TestHealthzAndMetrics(t *testing.T) {
	l := newTestLog(t, "log.example/health")
	s, _, _ := newTestServer(t, l)
	h := s.handler()
	r := do(t, h, http.MethodGet, "/healthz", nil)
	mustStatus(t, r, http.StatusOK)
	if string(r.body) != "ok\n" {
		t.Fatalf("healthz body %q", r.body)
	}
	s.healthy = func(context.Context) error { return fmt.Errorf("disk gone") }
	mustStatus(t, do(t, h, http.MethodGet, "/healthz", nil), http.StatusServiceUnavailable)

	do(t, h, http.MethodGet, "/no/such/path/at/all", nil)
	m := do(t, h, http.MethodGet, "/metrics", nil)
	mustStatus(t, m, http.StatusOK)
	for _, want := range []string{
		`moat_witness_cosignatures_total{origin="log.example/health"} 0`,
		`moat_witness_http_requests_total{code="200",handler="GET /healthz"} 1`,
		`moat_witness_http_requests_total{code="503",handler="GET /healthz"} 1`,
		`moat_witness_http_requests_total{code="404",handler="unmatched"} 1`,
		`go_goroutines`,
	} {
		if !bytes.Contains(m.body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestInternalError checks that a store failure is a 500 that does not
// reveal the error.
func TestInternalError(t *testing.T) {
	l := newTestLog(t, "log.example/err")
	var logs bytes.Buffer
	s, _, _ := newTestServerWithStore(t, failingStore{}, l)
	s.log = slog.New(slog.NewTextHandler(&logs, nil))
	n := l.grow(t, "a", 1)
	r := post(t, s.handler(), l.request(t, 0, n))
	mustStatus(t, r, http.StatusInternalServerError)
	if string(r.body) != "internal error\n" {
		t.Fatalf("500 body %q", r.body)
	}
	if !strings.Contains(logs.String(), "secret path /var/x") || !strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("store error not logged: %s", logs.String())
	}
}

type failingStore struct{}

func (failingStore) Load(context.Context, string) ([]byte, error) {
	return nil, fmt.Errorf("secret path /var/x: I/O error")
}

func (failingStore) CompareAndSwap(context.Context, string, []byte, []byte) error {
	return fmt.Errorf("secret path /var/x: I/O error")
}

// TestServe runs the real server on a loopback port, through init and
// add-log, and stops it by cancelling its context.
func TestServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "w")
	if _, err := initDir(dir, "witness.example/serve", true); err != nil {
		t.Fatal(err)
	}
	l := newTestLog(t, "log.example/serve")
	d, err := loadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.addLog(l.origin, l.key.Public()); err != nil {
		t.Fatal(err)
	}
	addrFile := filepath.Join(t.TempDir(), "addr")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- serve(ctx, serveOptions{Dir: dir, Listen: "127.0.0.1:0", AddrFile: addrFile, LogFormat: "json", Timeouts: defaultTimeouts}, &syncWriter{w: &logs})
	}()
	addr := waitAddr(t, addrFile, done)

	// A second serve on the same directory is refused.
	if err := serve(context.Background(), serveOptions{Dir: dir, Listen: "127.0.0.1:0", LogFormat: "text", Timeouts: defaultTimeouts}, io.Discard); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second serve: %v", err)
	}

	n := l.grow(t, "a", 3)
	resp, err := http.Post("http://"+addr+"/add-checkpoint", "text/plain", bytes.NewReader(l.request(t, 0, n)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %q", resp.StatusCode, body)
	}
	var ws []*tlog.WitnessPublicKey
	for _, k := range d.keys {
		ws = append(ws, k.Public())
	}
	checkCosigned(t, l, ws, l.note(t, n), body)

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	for _, secret := range d.keys {
		if bytes.Contains(logs.Bytes(), []byte(fmt.Sprintf("%x", secret.Seed()))) {
			t.Fatal("a seed was logged")
		}
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Fatalf("no clean stop in logs:\n%s", logs.String())
	}
}
