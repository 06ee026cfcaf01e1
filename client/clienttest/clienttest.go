// Package clienttest runs a key directory and a relay in the test's
// process, on one loopback HTTP listener, the way moatd serve wires them
// (cmd/moatd/relay.go: the directory service is the relay's device
// directory through server/relay/keyserverdir, and /relay/ goes to the
// relay), with in-memory stores, an in-process witness and generated
// admin keys. Tests enrol real client devices against it over HTTP.
package clienttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/keyserver/store/memstore"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/relay/keyserverdir"
	"github.com/moat-im/moat/server/store/blob/memblob"
	"github.com/moat-im/moat/server/store/mailbox/memmailbox"
	"github.com/moat-im/moat/server/store/prekey/memprekey"
)

// Server is a directory and a relay of one tenant on loopback.
type Server struct {
	t        testing.TB
	Tenant   org.TenantID
	Service  *service.Service
	Relay    *relay.Relay
	RelayKey *keys.RelaySigningPrivateKey
	HTTP     *httptest.Server
	Admins   []*org.AdminPrivateKey
	// Issuer is the tenant's anonymous-token issuer key, known to the
	// relay.
	Issuer *deliverytoken.IssuerPrivateKey
	Logs   *LogBuffer

	witnesses   []*switchWitness
	witnessKeys []org.WitnessKey
	boxes       *backupMailboxes // rollback.go
	ca          org.Signer       // the first CA key (forge.go)
	conns       connLog          // conns.go
}

// switchWitness is an in-process witness that can be taken down.
type switchWitness struct {
	service.LocalWitness
	down atomic.Bool
}

// AddCheckpoint implements service.WitnessClient.
func (w *switchWitness) AddCheckpoint(ctx context.Context, req *tlog.AddCheckpointRequest) ([]byte, error) {
	if w.down.Load() {
		return nil, errors.New("clienttest: witness down")
	}
	return w.LocalWitness.AddCheckpoint(ctx, req)
}

// LogBuffer collects log output, safe for concurrent writes.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// must panics on a setup error: the harness cannot run without it.
func must[T any](v T, err error) T {
	if err != nil {
		panic("clienttest: " + err.Error())
	}
	return v
}

// New starts a server; it stops when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	ctx := context.Background()
	s := &Server{t: t, Logs: &LogBuffer{}}
	rand.Read(s.Tenant[:])
	log := slog.New(slog.NewTextHandler(s.Logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	origin := service.Origin("moat.test", s.Tenant)
	fk := must(service.GenerateFileKeys(nil))
	s.ca = fk.CA
	// A key file and key store, so that the CA and the log key can be
	// rotated (RotateCA, RotateLogKey).
	keyFile := t.TempDir() + "/keys.json"
	if err := service.WriteKeyFile(keyFile, s.Tenant, fk); err != nil {
		t.Fatalf("clienttest: key file: %v", err)
	}
	for i, scheme := range []org.AdminScheme{org.AdminEd25519, org.AdminEd25519} {
		s.Admins = append(s.Admins, must(org.GenerateAdminKey(rand.Reader, org.AdminID{0xad, byte(i + 1)}, scheme)))
	}
	// Two witnesses: the first is the tenant's, the second is configured
	// (it cosigns) but only enters the trust bundle at ReplaceWitness.
	newWitness := func(name string) (*switchWitness, org.WitnessKey) {
		ed := must(tlog.GenerateWitnessKey(rand.Reader, name, tlog.CosignatureEd25519))
		pq := must(tlog.GenerateWitnessKey(rand.Reader, name, tlog.CosignatureMLDSA44))
		w := must(tlog.NewWitness(tlog.WitnessConfig{Keys: []*tlog.WitnessPrivateKey{ed, pq},
			Logs: map[string]*keys.LogPublicKey{origin: fk.TenantKeys().Log.Public()}, Store: tlog.NewMemoryWitnessStore()}))
		return &switchWitness{LocalWitness: service.LocalWitness{W: w, ID: name}},
			org.WitnessKey{Name: name, Ed25519: ed.Public().Bytes(), MLDSA44: pq.Public().Bytes()}
	}
	w1, wk := newWitness("witness.moat.test/w")
	w2, wk2 := newWitness("witness2.moat.test/w")
	s.witnesses, s.witnessKeys = []*switchWitness{w1, w2}, []org.WitnessKey{wk, wk2}
	var admins []*org.AdminKey
	for _, a := range s.Admins {
		admins = append(admins, a.Public())
	}
	many := service.Rate{PerSecond: 1e6, Burst: 1e6}
	s.Service = must(service.New(ctx, service.Options{
		Logger: log,
		Tenants: []service.TenantConfig{{ID: s.Tenant, Store: memstore.New(), Keys: fk.TenantKeys(),
			KeyStore:  &service.FileKeyStore{Path: keyFile, Tenant: s.Tenant},
			Witnesses: []service.WitnessClient{w1, w2},
			Create: &service.CreateParams{Origin: origin, Admins: admins, Threshold: 2,
				Witnesses: org.WitnessSet{Witnesses: []org.WitnessKey{wk}, Quorum: 1}}}},
		Limits: service.Limits{PerIP: many, PerTenant: many, Enrol: many},
		// In-process witnesses fail only when taken down: no retries.
		WitnessAttempts: 1,
	}))
	if err := s.Service.Cosign(ctx); err != nil {
		t.Fatalf("clienttest: first cosigning: %v", err)
	}
	s.RelayKey = must(keys.GenerateRelaySigningKey(rand.Reader))
	// The tenant's anonymous-token issuer key, at the relay and published
	// in the directory, as moatd serve --dev does (cmd/moatd/issuer.go).
	s.Issuer = must(deliverytoken.GenerateIssuerKey())
	issuers := relay.NewIssuerSet()
	issuers.Set(s.Tenant, s.Issuer)
	ten := s.Service.Tenant(s.Tenant)
	if err := ten.Admin(func(o *org.Tenant) error {
		_, err := o.PublishPolicy(s.Admins[0].Public().ID(), relay.IssuerPolicyID,
			[]org.PolicyEntry{{Key: relay.IssuerPolicyKey, Value: s.Issuer.Public().Bytes()}}, time.Now())
		return err
	}); err != nil {
		t.Fatalf("clienttest: issuer policy: %v", err)
	}
	s.Publish()
	off := relay.Rate{PerSecond: -1}
	s.HTTP = httptest.NewUnstartedServer(nil)
	name := s.HTTP.Listener.Addr().String()
	s.boxes = &backupMailboxes{live: must(memmailbox.New(memmailbox.Options{})), backup: must(memmailbox.New(memmailbox.Options{}))}
	s.Relay = must(relay.New(relay.Options{
		Name: name, SigningKey: s.RelayKey, Directory: keyserverdir.Directory{Service: s.Service},
		Mailboxes: s.boxes, Prekeys: memprekey.New(0),
		Issuers: issuers, TokenIssuer: issuers, Logger: log,
		Blobs:            must(memblob.New(memblob.Options{})),
		AttachmentLimits: relay.AttachmentLimits{SweepInterval: -1},
		Limits: relay.Limits{PerAddress: off, Challenge: off, PerDevice: off, PerTenant: off,
			SendPerAddress: off, SendPerToken: off, SendPerMailbox: off, BundlePerTarget: off},
	}))
	mux := http.NewServeMux()
	s.Relay.Routes(mux)
	rh := s.Relay.Instrument(mux)
	dh := s.Service.Handler()
	s.HTTP.Config.ConnContext = s.conns.connContext
	s.HTTP.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.conns.record(r)
		if strings.HasPrefix(r.URL.Path, "/relay/") {
			rh.ServeHTTP(w, r)
			return
		}
		dh.ServeHTTP(w, r)
	})
	s.HTTP.Start()
	t.Cleanup(func() {
		s.Relay.Close()
		s.HTTP.Close()
	})
	return s
}

// Config returns a client configuration for this server.
func (s *Server) Config() client.Config {
	return client.Config{DirectoryURL: s.HTTP.URL, RelayURL: s.HTTP.URL, RelayKey: s.RelayKey.Public(),
		OneTimePrekeys: 4, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// admin returns a directory client signing as admin i.
func (s *Server) admin(i int) *service.Client {
	return &service.Client{BaseURL: s.HTTP.URL, Tenant: s.Tenant, Admin: s.Admins[i]}
}

// AddUser adds a user with a display name and returns its id.
func (s *Server) AddUser(name string) org.UserID {
	s.t.Helper()
	var out service.OKResponse
	if err := s.admin(0).AdminOp(context.Background(), "add-user", service.AddUserRequest{DisplayName: name}, &out); err != nil {
		s.t.Fatalf("clienttest: add-user: %v", err)
	}
	return must(service.ParseUserID(out.User))
}

// AdminOp runs the admin operation op (docs/spec/directory-api.md §Admin
// API) as the first admin, with body in, decoding the answer into out.
func (s *Server) AdminOp(op string, in, out any) {
	s.t.Helper()
	if err := s.admin(0).AdminOp(context.Background(), op, in, out); err != nil {
		s.t.Fatalf("clienttest: %s: %v", op, err)
	}
}

// IssueCode issues an enrolment code for user and returns its text.
func (s *Server) IssueCode(user org.UserID) string {
	s.t.Helper()
	var out service.IssueCodeResponse
	if err := s.admin(0).AdminOp(context.Background(), "issue-code", service.IssueCodeRequest{User: user.String()}, &out); err != nil {
		s.t.Fatalf("clienttest: issue-code: %v", err)
	}
	return out.Code
}

// Publish publishes an epoch and requires it cosigned, so that every
// enrolment and revocation so far is in the directory.
func (s *Server) Publish() {
	s.t.Helper()
	ep, err := s.Service.Tenant(s.Tenant).PublishEpoch(context.Background(), time.Now())
	if err != nil {
		s.t.Fatalf("clienttest: publishing an epoch: %v", err)
	}
	if !ep.Cosigned {
		s.t.Fatalf("clienttest: epoch %d not cosigned: %v", ep.Entry.Epoch, ep.CosignError)
	}
}

// RevokeDevice revokes device of user and returns the wipe instruction.
func (s *Server) RevokeDevice(user org.UserID, device org.DeviceID) []byte {
	s.t.Helper()
	var out service.RevokeDeviceResponse
	if err := s.admin(0).AdminOp(context.Background(), "revoke-device",
		service.RevokeDeviceRequest{User: user.String(), Device: device.String(), Reason: "lost"}, &out); err != nil {
		s.t.Fatalf("clienttest: revoke-device: %v", err)
	}
	return out.Wipe
}

// RotateCA rotates the tenant's CA through the admin API under dual
// control (both admins approve), as moatd admin rotate-ca does, and
// publishes two epochs.
func (s *Server) RotateCA() { s.rotate("rotate-ca") }

// RotateLogKey rotates the tenant's log key likewise.
func (s *Server) RotateLogKey() { s.rotate("rotate-log-key") }

func (s *Server) rotate(op string) {
	s.t.Helper()
	ctx := context.Background()
	var p service.RotationProposal
	if err := s.admin(0).AdminOp(ctx, op, nil, &p); err != nil {
		s.t.Fatalf("clienttest: %s: proposing: %v", op, err)
	}
	b, err := org.ParseTrustBundle(p.Bundle)
	if err != nil {
		s.t.Fatalf("clienttest: %s: proposal: %v", op, err)
	}
	var out service.TrustBundleApproveResponse
	for i := range s.Admins {
		ap := must(org.ApproveTrustBundle(s.Admins[i], b))
		if err := s.admin(i).AdminOp(ctx, op, service.RotateRequest{Bundle: p.Bundle, Approval: must(ap.Marshal())}, &out); err != nil {
			s.t.Fatalf("clienttest: %s: approval %d: %v", op, i, err)
		}
	}
	if !out.Applied {
		s.t.Fatalf("clienttest: %s not applied: %+v", op, out)
	}
	s.Publish()
	s.Publish()
}

// ReplaceWitness replaces the tenant's witness by the second one through
// the admin API under dual control (moatd admin set-witnesses), publishes
// two epochs, and takes the first witness down: later checkpoints carry
// only the new witness's cosignature.
func (s *Server) ReplaceWitness() {
	s.t.Helper()
	ctx := context.Background()
	ten := s.Service.Tenant(s.Tenant)
	prop := service.ProposeWitnesses(ten.TrustBundle(), org.WitnessSet{Witnesses: s.witnessKeys[1:], Quorum: 1}, time.Now())
	enc := must(service.MarshalProposal(prop))
	for i := range s.Admins {
		ap := must(org.ApproveTrustBundle(s.Admins[i], prop))
		if err := s.admin(i).AdminOp(ctx, "set-witnesses", service.TrustBundleApproveRequest{Bundle: enc, Approval: must(ap.Marshal())}, nil); err != nil {
			s.t.Fatalf("clienttest: set-witnesses: approval %d: %v", i, err)
		}
	}
	s.Publish()
	s.Publish()
	s.witnesses[0].down.Store(true)
	s.Publish()
}

// String names the server in test logs.
func (s *Server) String() string {
	return fmt.Sprintf("clienttest server %s tenant %s", s.HTTP.URL, s.Tenant)
}

// AnonymousAuthorization returns a SendAuthorization with a fresh
// anonymous token of the tenant, issued directly with the issuer key.
func (s *Server) AnonymousAuthorization() []byte {
	s.t.Helper()
	req, pending, err := deliverytoken.RequestTokens(s.Issuer.Public(), s.Tenant, 1)
	if err != nil {
		s.t.Fatal(err)
	}
	resp, _, err := s.Issuer.Issue(req)
	if err != nil {
		s.t.Fatal(err)
	}
	toks, err := pending.Finalize(resp)
	if err != nil {
		s.t.Fatal(err)
	}
	auth, err := relay.AnonymousAuthorization(toks[0])
	if err != nil {
		s.t.Fatal(err)
	}
	return auth
}

// Send sends an envelope to the relay as anyone would.
func (s *Server) Send(env, auth []byte) error {
	c := &relay.Client{BaseURL: s.HTTP.URL, RelayKey: s.RelayKey.Public()}
	_, err := c.Send(context.Background(), auth, env)
	return err
}

// Capture is an http.RoundTripper that keeps the body of every envelope
// sent (POST /relay/v1/send, and each item of POST /relay/v1/send-batch)
// through it.
type Capture struct {
	mu        sync.Mutex
	Envelopes [][]byte
	// Kinds are the delivery-token kinds of the sends' authorizations.
	Kinds []deliverytoken.Kind
	// FailAcks makes acknowledgements fail (a crash between a client's
	// commit and its acknowledgement).
	FailAcks bool
	// DropSendAnswers makes sends reach the relay but their answers get
	// lost.
	DropSendAnswers bool
}

// RoundTrip implements http.RoundTripper.
func (c *Capture) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && r.URL.Path == "/relay/v1/send" && r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body.Close()
		var kind deliverytoken.Kind
		if raw, err := base64.RawURLEncoding.DecodeString(r.Header.Get(relay.HeaderSendAuthorization)); err == nil {
			if a, err := deliverytoken.ParseSendAuthorization(raw); err == nil {
				kind = a.Kind
			}
		}
		c.mu.Lock()
		c.Envelopes = append(c.Envelopes, b)
		c.Kinds = append(c.Kinds, kind)
		c.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	if r.Method == http.MethodPost && r.URL.Path == "/relay/v1/send-batch" && r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body.Close()
		if items, err := relay.ParseSendBatch(b); err == nil {
			c.mu.Lock()
			for _, it := range items {
				var kind deliverytoken.Kind
				if a, err := deliverytoken.ParseSendAuthorization(it.Auth); err == nil {
					kind = a.Kind
				}
				c.Envelopes = append(c.Envelopes, bytes.Clone(it.Envelope))
				c.Kinds = append(c.Kinds, kind)
			}
			c.mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	c.mu.Lock()
	fail := c.FailAcks && strings.HasSuffix(r.URL.Path, "/ack")
	drop := c.DropSendAnswers && (r.URL.Path == "/relay/v1/send" || r.URL.Path == "/relay/v1/send-batch")
	c.mu.Unlock()
	if fail {
		return nil, errors.New("clienttest: acknowledgement dropped")
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && drop {
		resp.Body.Close()
		return nil, errors.New("clienttest: answer lost")
	}
	return resp, err
}

// SetFailAcks sets FailAcks.
func (c *Capture) SetFailAcks(v bool) {
	c.mu.Lock()
	c.FailAcks = v
	c.mu.Unlock()
}

// SetDropSendAnswers sets DropSendAnswers.
func (c *Capture) SetDropSendAnswers(v bool) {
	c.mu.Lock()
	c.DropSendAnswers = v
	c.mu.Unlock()
}

// LastKind returns the token kind of the last send.
func (c *Capture) LastKind() deliverytoken.Kind {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.Kinds) == 0 {
		return 0
	}
	return c.Kinds[len(c.Kinds)-1]
}

// Last returns the last envelope captured.
func (c *Capture) Last() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.Envelopes) == 0 {
		return nil
	}
	return bytes.Clone(c.Envelopes[len(c.Envelopes)-1])
}

// AnotherRelayKey returns a relay public key that is not this server's.
func (s *Server) AnotherRelayKey() *keys.RelaySigningPublicKey {
	return must(keys.GenerateRelaySigningKey(rand.Reader)).Public()
}

// ApproveAsAdmins has every admin approve the enrolment request of a new
// device of user (lost-device recovery, docs/spec/org.md §Dual control).
func (s *Server) ApproveAsAdmins(user org.UserID, request []byte) {
	s.t.Helper()
	req, err := org.ParseEnrolmentRequest(request)
	if err != nil {
		s.t.Fatal(err)
	}
	for i, a := range s.Admins {
		ap, err := org.ApproveByAdmin(a, user, req)
		if err != nil {
			s.t.Fatal(err)
		}
		apb, err := ap.Marshal()
		if err != nil {
			s.t.Fatal(err)
		}
		if err := s.admin(i).AdminOp(context.Background(), "approve",
			service.ApproveRequest{User: user.String(), Request: request, Approval: apb}, nil); err != nil {
			s.t.Fatalf("clienttest: approve: %v", err)
		}
	}
}
