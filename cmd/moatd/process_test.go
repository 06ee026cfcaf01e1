package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/server/relay"
)

// Helpers of the tests that run moatd serve as a separate process (T34,
// T36): build it, start it on a data directory, enrol a device.

// buildMoatd builds moatd into a temporary directory.
func buildMoatd(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "moatd")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/moat-im/moat/cmd/moatd")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("building moatd: %v", err)
	}
	return bin
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serverProc is a running moatd serve.
type serverProc struct {
	cmd            *exec.Cmd
	url            string
	stdout, stderr *syncBuffer
	exited         chan struct{}
}

// startServe starts moatd serve --dev on data and waits until it is ready.
func startServe(t testing.TB, bin, data string, extra ...string) *serverProc {
	t.Helper()
	addrFile := filepath.Join(data, fmt.Sprintf("addr-%d", time.Now().UnixNano()))
	args := append([]string{"serve", "--dev", "--data", data, "--listen", "127.0.0.1:0", "--addr-file", addrFile, "--epoch", "1h"}, extra...)
	p := &serverProc{cmd: exec.Command(bin, args...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(addrFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			p.url = "http://" + strings.TrimSpace(string(b))
			if resp, err := http.Get(p.url + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					os.Remove(addrFile)
					return p
				}
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("moatd exited: %s", p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("moatd not ready: %s", p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to end.
func (p *serverProc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// stop sends SIGINT and waits for a clean exit.
func (p *serverProc) stop(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("moatd did not stop")
	}
}

// enrolledDevice is a device enrolled with the dev tenant's demo code.
type enrolledDevice struct {
	tenant org.TenantID
	id     *keys.DeviceIdentityPrivate
	cert   *org.DeviceCertificate
	api    *service.Client
	kt     *kt.Client
}

func (d *enrolledDevice) mailbox() sealed.MailboxID {
	return sealed.NewMailboxID(d.tenant, d.cert.Device)
}

// enrolDemo enrols a new device with the enrolment code the first start of
// p printed, and has an admin publish the epoch that publishes the
// enrolment (it is durable once acknowledged).
func enrolDemo(t testing.TB, bin string, p *serverProc) *enrolledDevice {
	t.Helper()
	m := regexp.MustCompile(`(?m)^enrolment-code (\S+)$`).FindStringSubmatch(p.stdout.String())
	if m == nil {
		t.Fatalf("no enrolment code in %q", p.stdout)
	}
	d := enrolCode(t, p, m[1])
	publishEpoch(t, bin, p)
	return d
}

// enrolCode enrols a new device with the enrolment code text.
func enrolCode(t testing.TB, p *serverProc, text string) *enrolledDevice {
	t.Helper()
	code, err := org.ParseEnrolmentCodeText(text)
	check(t, err)
	id, err := keys.GenerateDeviceIdentity(rand.Reader)
	check(t, err)
	mk, err := keys.GenerateIdentitySigningKey(rand.Reader)
	check(t, err)
	mls, err := org.NewMLSSignatureKey(org.MLSSchemeEd25519, mk.Public().Raw())
	check(t, err)
	req, err := org.NewEnrolmentRequest(code, id, mls)
	check(t, err)
	api := &service.Client{BaseURL: p.url, Tenant: code.Tenant}
	res, err := api.Enrol(context.Background(), code, req)
	check(t, err)
	c, cert, err := kt.Enrol(code, req, res.Enrolment(), time.Hour, 0, time.Now())
	check(t, err)
	api.Device = &service.DeviceCredentials{User: cert.User, Device: cert.Device, Key: id.Signing}
	return &enrolledDevice{tenant: code.Tenant, id: id, cert: cert, api: api, kt: c}
}

// relayClient is a relay client of d at url, with the relay key of data.
func relayClient(t testing.TB, d *enrolledDevice, data, url string) *relay.Client {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, relayDir, relayPubFile))
	check(t, err)
	key, err := keys.ParseRelaySigningPublicKeyText(strings.TrimSpace(string(b)))
	check(t, err)
	return &relay.Client{BaseURL: url, RelayKey: key, HTTP: &http.Client{Timeout: 10 * time.Second},
		Device: &relay.DeviceCredentials{Tenant: d.tenant, Device: d.cert.Device, Key: d.id.Signing}}
}

// macToken registers a MAC delivery-token verifier for d's mailbox and
// returns the SendAuthorization a contact presents.
func macToken(t testing.TB, c *relay.Client, d *enrolledDevice, contact byte) []byte {
	t.Helper()
	tk, err := deliverytoken.GenerateTokenKey(nil)
	check(t, err)
	cid := deliverytoken.ContactID{contact}
	check(t, c.AddVerifier(context.Background(), tk.Verifier(d.mailbox(), cid, 0)))
	auth, err := (&deliverytoken.SendAuthorization{Kind: deliverytoken.KindMAC, MAC: tk.Token(d.mailbox(), cid, 0)}).Marshal()
	check(t, err)
	return auth
}

// sealer seals envelopes to d's mailbox under a sealed-sender key d signs
// here (the relay reads only the envelope header).
type sealer struct {
	r      *sealed.Recipient
	sender sealed.Sender
}

func newSealer(t testing.TB, d *enrolledDevice) *sealer {
	t.Helper()
	ssk, err := keys.GenerateSealedSenderKey(rand.Reader)
	check(t, err)
	now := time.Now().Truncate(time.Second)
	rec := keys.SignSealedSenderKey(1, now, now.Add(24*time.Hour), ssk.Public(), d.id.Signing)
	r, err := sealed.NewRecipient(d.mailbox(), d.id.Signing.Public(), rec, now)
	check(t, err)
	from, err := keys.GenerateDeviceIdentity(rand.Reader)
	check(t, err)
	return &sealer{r: r, sender: sealed.Sender{Tenant: d.tenant, User: [16]byte{1}, Device: [16]byte{2}, Serial: 1, Identity: from.Public()}}
}

func (s *sealer) seal(t testing.TB, content []byte) (sealed.MessageID, []byte) {
	t.Helper()
	id := sealed.NewMessageID()
	env, err := s.r.Seal(&sealed.Message{MessageID: id, TTL: 3600, Sender: s.sender, Timestamp: time.Now(),
		ContentType: sealed.ContentRatchetMessage, Content: content})
	check(t, err)
	return id, env
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// publishEpoch has an admin publish an epoch (moatd admin publish).
func publishEpoch(t testing.TB, bin string, p *serverProc) {
	t.Helper()
	if out := adminRun(t, bin, p, "publish"); !strings.Contains(out, "cosigned true") {
		t.Fatalf("moatd admin publish: %s", out)
	}
}

// adminRun runs moatd admin ARGS as the first dev admin, whose key file
// the first start of p printed, and returns its output.
func adminRun(t testing.TB, bin string, p *serverProc, args ...string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^admin-key (\S+)$`).FindStringSubmatch(p.stdout.String())
	if m == nil {
		t.Fatalf("no admin key in %q", p.stdout)
	}
	cmd := exec.Command(bin, append([]string{"admin"}, args...)...)
	cmd.Env = append(os.Environ(), "MOATD_SERVER="+p.url, "MOATD_KEY="+m[1])
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("moatd admin %v: %v\n%s", args, err, out)
	}
	return string(out)
}
