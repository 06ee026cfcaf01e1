package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/relay"
)

// runFlags configure a load run.
type runFlags struct {
	devices      int
	messages     int
	content      int
	concurrency  int
	producers    int
	rates        []int
	rateFor      time.Duration
	openConns    int
	conns        []int
	pushConns    []int
	anonMessages int
	e2eLow       int
	e2eHigh      int
	e2eFor       time.Duration
	phases       []string
	http2        bool
	memVerifiers bool
	memMailbox   bool
	// The relay's mailbox store: badger memtable size (MiB) and count; 0: the store's defaults.
	memTableMB, memTables int
	relayBin              string
	batch                 int
}

var allPhases = []string{"raw", "tls", "send", "sendbatch", "anon", "latency", "latencybatch", "memory", "pushmem", "e2e"}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags]",
		Short: "Measure the relay against raw badger group commit (docs/performance.md §Relay)",
		Long: `run starts a relay process on loopback TLS and measures, in order, the phases
raw (badger group commit of the envelopes' bytes), tls (the envelopes
POSTed to a handler that discards them), send (durable sends through the
relay, closed loop), latency (enqueue-ack latency at --rate, open loop),
memory (relay memory per idle TLS connection between the two --conns
counts) and e2e (send-to-push latency at --e2e-low and --e2e-high), and
prints a table. Each phase that stores envelopes gets a fresh relay.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLoad(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.devices, "devices", 1000, "recipient devices (mailboxes); in e2e each holds a push channel")
	fl.IntVar(&f.messages, "messages", 50000, "envelopes sealed before the timed phases; raw and send use them all")
	fl.IntVar(&f.content, "content", 1024, "content bytes per envelope (1 KiB seals to a 4 KiB envelope)")
	fl.IntVar(&f.concurrency, "concurrency", 256, "concurrent senders in the closed-loop phases")
	fl.IntVar(&f.producers, "raw-producers", 1024, "producers of the raw group-commit baseline")
	fl.IntSliceVar(&f.rates, "rate", []int{10000, 5000, 2000}, "offered sends per second in the latency phase, one row each")
	fl.DurationVar(&f.rateFor, "rate-duration", 4*time.Second, "length of each latency rate (at most --messages sends)")
	fl.IntVar(&f.openConns, "open-conns", 512, "client connections the open-loop phases (latency, e2e) send over")
	fl.IntSliceVar(&f.conns, "conns", []int{10000, 18000}, "two idle TLS connection counts for the memory slope")
	fl.IntVar(&f.anonMessages, "anon-messages", 500, "sends with anonymous tokens in the anon phase (tokens issued beforehand, about 9 ms of CPU each)")
	fl.IntSliceVar(&f.pushConns, "push-conns", []int{2000, 4000}, "two idle push-channel counts for the pushmem slope")
	fl.IntVar(&f.e2eLow, "e2e-low", 200, "low offered rate of the e2e phase, sends per second")
	fl.IntVar(&f.e2eHigh, "e2e-high", 2000, "high offered rate of the e2e phase, sends per second")
	fl.DurationVar(&f.e2eFor, "e2e-duration", 3*time.Second, "length of each e2e rate")
	fl.StringSliceVar(&f.phases, "phases", allPhases, "phases to run")
	fl.IntVar(&f.batch, "batch", 16, "envelopes per request in the sendbatch phase (1 to 64)")
	fl.BoolVar(&f.http2, "http2", false, "send over HTTP/2 (default HTTP/1.1 keep-alive connections)")
	fl.BoolVar(&f.memVerifiers, "memory-verifiers", false, "relay keeps delivery-token verifiers in memory (default badgertokens)")
	fl.BoolVar(&f.memMailbox, "memory-mailbox", false, "relay keeps mailboxes in memory (memmailbox): its cost without the store (default badgermailbox)")
	fl.IntVar(&f.memTableMB, "mailbox-memtable-mb", 0, "badger memtable size of the relay's mailbox store, MiB (0: the store's default)")
	fl.IntVar(&f.memTables, "mailbox-memtables", 0, "badger memtables of the relay's mailbox store (0: the store's default)")
	fl.StringVar(&f.relayBin, "relay-bin", "", "binary to run as the relay process (default this one)")
	_ = fl.MarkHidden("relay-bin")
	return cmd
}

// result is one row of the report.
type result struct {
	metric, goal, measured, ratio, conditions string
}

// gen is a load run.
type gen struct {
	f       runFlags
	tmp     string
	certPEM []byte
	pool    *x509.CertPool
	seed    []byte
	devs    []*loadDevice
	auths   []string // base64url SendAuthorization per device
	envs    [][]byte
	ids     map[sealed.MessageID]int
	log     io.Writer
	// anonAuths, when set, authorise envelope i with anonymous token i.
	anonAuths []string
	issuerDER []byte
	results   []result
	ratios    map[string]float64
	// lastLoad is the load average when the last closed loop started.
	lastLoad string
}

func (g *gen) logf(format string, a ...any) {
	fmt.Fprintf(g.log, "moat-load: "+format+"\n", a...)
}

func (g *gen) add(r result) { g.results = append(g.results, r) }

func runLoad(ctx context.Context, f runFlags, stdout, stderr io.Writer) error {
	if len(f.conns) != 2 || f.conns[0] <= 0 || f.conns[1] <= f.conns[0] {
		return errors.New("--conns: want two counts, the second larger")
	}
	if len(f.pushConns) != 2 || f.pushConns[0] <= 0 || f.pushConns[1] <= f.pushConns[0] {
		return errors.New("--push-conns: want two counts, the second larger")
	}
	if f.devices < 1 || f.messages < 1 || f.anonMessages < 1 || f.concurrency < 1 || f.producers < 1 || f.openConns < 1 || len(f.rates) == 0 || slices.Min(f.rates) < 1 || f.e2eLow < 1 || f.e2eHigh < 1 {
		return errors.New("counts and rates must be positive")
	}
	if f.batch < 1 || f.batch > relay.MaxBatchItems {
		return fmt.Errorf("--batch: want 1 to %d", relay.MaxBatchItems)
	}
	for _, p := range f.phases {
		if !slices.Contains(allPhases, p) {
			return fmt.Errorf("--phases: unknown phase %q (known: %s)", p, strings.Join(allPhases, ","))
		}
	}
	if f.relayBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		f.relayBin = exe
	}
	g := &gen{f: f, log: stderr, ratios: map[string]float64{}}
	var err error
	if g.tmp, err = os.MkdirTemp("", "moat-load-"); err != nil {
		return err
	}
	defer os.RemoveAll(g.tmp)
	if err := g.makeCert(); err != nil {
		return err
	}
	g.seed = make([]byte, 32)
	rand.Read(g.seed)
	if g.devs, err = deriveDevices(g.seed, f.devices); err != nil {
		return err
	}
	for _, d := range g.devs {
		a, err := d.token()
		if err != nil {
			return err
		}
		g.auths = append(g.auths, base64.RawURLEncoding.EncodeToString(a))
	}
	if !slices.ContainsFunc(f.phases, func(p string) bool { return p != "memory" && p != "pushmem" }) {
		g.f.messages = 1 // the memory phases send nothing
	}
	start := time.Now()
	if err := g.seal(); err != nil {
		return err
	}
	g.logf("sealed %d envelopes of %d bytes in %v", len(g.envs), len(g.envs[0]), time.Since(start).Round(time.Millisecond))

	// What was measured is reported even if a later phase fails.
	defer g.report(stdout)
	has := func(p string) bool { return slices.Contains(f.phases, p) }
	for _, ph := range []struct {
		name string
		on   bool
		run  func() error
	}{
		{"raw", has("raw"), g.raw},
		{"send", has("tls") || has("send"), func() error { return g.sends(ctx, has("tls"), has("send")) }},
		{"sendbatch", has("sendbatch"), func() error { return g.sendBatches(ctx) }},
		{"anon", has("anon"), func() error { return g.anon(ctx) }},
		{"latency", has("latency"), func() error { return g.latency(ctx) }},
		{"latencybatch", has("latencybatch"), func() error { return g.latencyBatch(ctx) }},
		{"memory", has("memory"), func() error { return g.memory(ctx) }},
		{"pushmem", has("pushmem"), func() error { return g.pushMemory(ctx) }},
		{"e2e", has("e2e"), func() error { return g.e2e(ctx) }},
	} {
		if !ph.on {
			continue
		}
		if err := ph.run(); err != nil {
			return fmt.Errorf("%s: %w", ph.name, err)
		}
	}
	return nil
}

// makeCert writes a self-signed ECDSA P-256 certificate for 127.0.0.1.
func (g *gen) makeCert() error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: relayName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{relayName},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		return err
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	g.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(g.tmp, "cert.pem"), g.certPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(g.tmp, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		return err
	}
	g.pool = x509.NewCertPool()
	g.pool.AppendCertsFromPEM(g.certPEM)
	return nil
}

// seal seals the run's envelopes, envelope i to device i mod devices,
// from one sender device, on every core.
func (g *gen) seal() error {
	now := time.Now()
	sender, err := keys.GenerateDeviceIdentity(rand.Reader)
	if err != nil {
		return err
	}
	recs := make([]*sealed.Recipient, len(g.devs))
	for i, d := range g.devs {
		ssk, err := keys.GenerateSealedSenderKey(rand.Reader)
		if err != nil {
			return err
		}
		rec := keys.SignSealedSenderKey(1, now.Truncate(time.Second), now.Add(14*24*time.Hour), ssk.Public(), d.idk.Signing)
		if recs[i], err = sealed.NewRecipient(d.mailbox(), d.idk.Public().Signing, rec, now); err != nil {
			return err
		}
	}
	content := make([]byte, g.f.content)
	g.envs = make([][]byte, g.f.messages)
	ids := make([]sealed.MessageID, g.f.messages)
	var next atomic.Int64
	errs := make(chan error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(g.envs) {
					return
				}
				ids[i] = sealed.NewMessageID()
				env, err := recs[i%len(recs)].Seal(&sealed.Message{
					MessageID: ids[i], TTL: 7 * 24 * 3600,
					Sender:    sealed.Sender{Tenant: loadTenant, User: [16]byte{0x5e}, Device: [16]byte{0x5e}, Serial: 1, Identity: sender.Public()},
					Timestamp: now, ContentType: sealed.ContentRatchetMessage, Content: content,
				})
				if err != nil {
					errs <- err
					return
				}
				g.envs[i] = env
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	g.ids = make(map[sealed.MessageID]int, len(ids))
	for i, id := range ids {
		g.ids[id] = i
	}
	return nil
}

// relayProc is a running relay process.
type relayProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	url   string
	addr  string
	key   *keys.RelaySigningPublicKey
	http  *http.Client // HTTP/2 sends, memory queries
	h1    *h1pool      // HTTP/1.1 sends
}

// startRelay starts a relay process on a fresh data directory.
func (g *gen) startRelay(ctx context.Context, name string, conns int) (*relayProc, error) {
	return g.startRelayWith(ctx, name, conns, g.f.devices, g.f.memVerifiers)
}

// startRelayWith starts a relay process certifying the run's first
// devices devices.
func (g *gen) startRelayWith(ctx context.Context, name string, conns, devices int, memVerifiers bool) (*relayProc, error) {
	data := filepath.Join(g.tmp, name)
	args := []string{"relay", "--data", data, "--tls-cert", filepath.Join(g.tmp, "cert.pem"),
		"--tls-key", filepath.Join(g.tmp, "key.pem"), "--seed", hex.EncodeToString(g.seed),
		"--devices", strconv.Itoa(devices)}
	if memVerifiers {
		args = append(args, "--memory-verifiers")
	}
	if g.f.memMailbox {
		args = append(args, "--memory-mailbox")
	}
	if g.f.memTableMB != 0 || g.f.memTables != 0 {
		args = append(args, "--mailbox-memtable-mb", strconv.Itoa(g.f.memTableMB), "--mailbox-memtables", strconv.Itoa(g.f.memTables))
	}
	if g.issuerDER != nil {
		args = append(args, "--issuer-key", filepath.Join(g.tmp, "issuer.der"))
	}
	cmd := exec.CommandContext(ctx, g.f.relayBin, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = g.log
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &relayProc{cmd: cmd, stdin: stdin}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("relay process did not start: %w", err)
	}
	var h relayHello
	if err := json.Unmarshal(line, &h); err != nil {
		p.stop()
		return nil, fmt.Errorf("relay process: %q: %w", line, err)
	}
	if p.key, err = keys.ParseRelaySigningPublicKeyText(h.Key); err != nil {
		p.stop()
		return nil, err
	}
	go io.Copy(io.Discard, stdout)
	p.addr, p.url = h.Addr, "https://"+h.Addr
	p.http = &http.Client{Transport: g.transport(conns, g.f.http2), Timeout: time.Minute}
	p.h1 = newH1Pool(p.addr, &tls.Config{RootCAs: g.pool, MinVersion: tls.VersionTLS13}, conns)
	if !g.f.http2 {
		if err := p.h1.fill(ctx, conns); err != nil {
			p.stop()
			return nil, err
		}
	}
	return p, nil
}

// transport returns a client transport that trusts the run's certificate
// and keeps up to conns idle connections.
func (g *gen) transport(conns int, h2 bool) *http.Transport {
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: g.pool, MinVersion: tls.VersionTLS13},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		Protocols:           new(http.Protocols),
	}
	if h2 {
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	return tr
}

// stop ends the relay process: it closes its standard input and waits,
// then kills it.
func (p *relayProc) stop() {
	if p.http != nil {
		p.http.CloseIdleConnections()
	}
	if p.h1 != nil {
		p.h1.close()
	}
	p.stdin.Close()
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// cpu returns the relay process's user and system CPU time so far.
func (p *relayProc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which ends at the last ')'.
	s := string(b)
	fs := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fs) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fs[11], 10, 64)
	st, _ := strconv.ParseInt(fs[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// selfCPU returns this process's user and system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// mem asks the relay process for its memory after a GC.
func (p *relayProc) mem(ctx context.Context) (memInfo, error) {
	var m memInfo
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/loadtest/mem", nil)
	if err != nil {
		return m, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

// send POSTs envelope i to path and checks the answer: for the relay, a
// receipt of a new message (its signature is not checked: that would be
// the generator's cost, not the relay's).
func (g *gen) send(ctx context.Context, p *relayProc, path string, i int, check bool) error {
	env, auth := g.envs[i], g.auths[i%len(g.auths)]
	if g.anonAuths != nil {
		auth = g.anonAuths[i]
	}
	b, err := p.post(ctx, g.f.http2, path, auth, env)
	if err != nil {
		return err
	}
	if check {
		rc, err := relay.ParseReceipt(b)
		if err != nil {
			return err
		}
		if rc.Duplicate {
			return errors.New("receipt of a duplicate")
		}
	}
	return nil
}

// post POSTs body to path, over HTTP/2 (the net/http client) or HTTP/1.1
// (a pooled h1 connection), with auth as the send authorization unless
// it is empty, and returns the answer's body if its status is 200.
func (p *relayProc) post(ctx context.Context, http2 bool, path, auth string, body []byte) ([]byte, error) {
	var status int
	var b []byte
	if http2 {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+path, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		if auth != "" {
			req.Header.Set(relay.HeaderSendAuthorization, auth)
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := p.http.Do(req)
		if err != nil {
			return nil, err
		}
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		status = resp.StatusCode
	} else {
		c, err := p.h1.get(ctx)
		if err != nil {
			return nil, err
		}
		if status, b, err = c.post(path, auth, body); err != nil {
			return nil, err
		}
		p.h1.put(c)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", status, bytes.TrimSpace(b[:min(len(b), 200)]))
	}
	return b, nil
}

// closedLoop sends envelopes 0..n-1 to path from concurrency workers and
// returns the rate, the latencies and the CPU time of both processes.
func (g *gen) closedLoop(ctx context.Context, p *relayProc, path string, n int, check bool) (rate float64, lat []time.Duration, relayCPU, selfCPUd time.Duration, err error) {
	rc0, sc0 := p.cpu(), selfCPU()
	g.lastLoad = loadAvg()
	lat, el, err := workers(g.f.concurrency, n, func(i int) error { return g.send(ctx, p, path, i, check) })
	if err != nil {
		return 0, nil, 0, 0, err
	}
	return float64(n) / el.Seconds(), lat, p.cpu() - rc0, selfCPU() - sc0, nil
}

// workers runs do(0..n-1) from k workers, each index once,
// until the first error, and returns each call's latency and the time
// all took.
func workers(k, n int, do func(i int) error) ([]time.Duration, time.Duration, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	start := time.Now()
	for range k {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || firstErr.Load() != nil {
					return
				}
				t := time.Now()
				if err := do(i); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	if e := firstErr.Load(); e != nil {
		return nil, 0, *e
	}
	return lat, el, nil
}

// openLoop sends envelopes from..from+n-1 at rate per second, each at its
// scheduled time whatever the earlier ones do, and returns each send's
// scheduled time and latency from it.
func (g *gen) openLoop(ctx context.Context, p *relayProc, from, n, rate int) (sched []time.Time, lat []time.Duration, achieved float64, failed int64, err error) {
	return openLoopDo(n, rate, func(i int) error { return g.send(ctx, p, "/relay/v1/send", from+i, true) })
}

// openLoopDo calls do(0..n-1) at rate per second, each at its scheduled
// time whatever the earlier ones do, and returns each call's scheduled
// time and latency from it.
func openLoopDo(n, rate int, do func(i int) error) (sched []time.Time, lat []time.Duration, achieved float64, failed int64, err error) {
	sched = make([]time.Time, n)
	lat = make([]time.Duration, n)
	interval := time.Second / time.Duration(rate)
	var wg sync.WaitGroup
	var nfail atomic.Int64
	var firstErr atomic.Pointer[error]
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		sched[i] = at
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := do(i); err != nil {
				nfail.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			lat[i] = time.Since(at)
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if e := firstErr.Load(); e != nil {
		err = *e
	}
	return sched, lat, float64(n) / el.Seconds(), nfail.Load(), err
}

// quantile returns the q-quantile of sorted durations, in milliseconds.
func quantile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[int(q*float64(len(sorted)-1))].Microseconds()) / 1000
}

func sorted(d []time.Duration) []time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d
}

func (g *gen) envSize() int { return len(g.envs[0]) }

func (g *gen) proto() string {
	if g.f.http2 {
		return "HTTP/2"
	}
	return "HTTP/1.1"
}

// sends runs the tls and send phases on one relay process.
func (g *gen) sends(ctx context.Context, tlsPhase, sendPhase bool) error {
	p, err := g.startRelay(ctx, "send", g.f.concurrency)
	if err != nil {
		return err
	}
	defer p.stop()
	n := len(g.envs)
	if tlsPhase {
		g.logf("tls: %d POSTs of %d bytes to a discarding handler, %d senders", n, g.envSize(), g.f.concurrency)
		rate, lat, rcpu, scpu, err := g.closedLoop(ctx, p, "/loadtest/discard", n, false)
		if err != nil {
			return err
		}
		g.ratios["tls"] = rate
		s := sorted(lat)
		g.add(result{metric: fmt.Sprintf("HTTP+TLS alone: %d-byte POSTs to a handler that discards them", g.envSize()),
			goal: "(baseline)", measured: fmt.Sprintf("%.0f req/s", rate),
			ratio:      g.rawRatio(rate),
			conditions: fmt.Sprintf("%d senders, %s, closed loop; relay CPU %.1f µs/req, generator %.1f µs/req; p50 %.1f ms, p99 %.1f ms; load average %s → %s", g.f.concurrency, g.proto(), us(rcpu, n), us(scpu, n), quantile(s, .5), quantile(s, .99), g.lastLoad, loadAvg())})
	}
	if sendPhase {
		g.logf("send: %d sealed sends of %d bytes through the relay, %d senders", n, g.envSize(), g.f.concurrency)
		rate, lat, rcpu, scpu, err := g.closedLoop(ctx, p, "/relay/v1/send", n, true)
		if err != nil {
			return err
		}
		s := sorted(lat)
		cond := fmt.Sprintf("%d senders over %d mailboxes, %s, closed loop, envelopes sealed beforehand, MAC tokens; relay CPU %.1f µs/send, generator %.1f µs/send; p50 %.1f ms, p99 %.1f ms",
			g.f.concurrency, g.f.devices, g.proto(), us(rcpu, n), us(scpu, n), quantile(s, .5), quantile(s, .99))
		if t := g.ratios["tls"]; t > 0 {
			cond += fmt.Sprintf("; %.2f× HTTP+TLS alone", rate/t)
		}
		cond += fmt.Sprintf("; load average %s → %s", g.lastLoad, loadAvg()) + g.storeNote()
		g.add(result{metric: fmt.Sprintf("durable %d-byte sealed sends (%d B content) through the relay over TLS", g.envSize(), g.f.content),
			goal: "≥ 0.6× raw", measured: fmt.Sprintf("%.0f msgs/s", rate), ratio: g.rawRatio(rate), conditions: cond})
	}
	return nil
}

// storeNote is appended to a row's conditions when the relay's mailboxes
// are in memory (--memory-mailbox).
func (g *gen) storeNote() string {
	if g.f.memMailbox {
		return "; **in-memory mailbox store (memmailbox), not durable**"
	}
	return ""
}

func us(d time.Duration, n int) float64 { return float64(d.Microseconds()) / float64(n) }

func (g *gen) rawRatio(rate float64) string {
	raw := g.ratios["raw"]
	if raw == 0 {
		return "—"
	}
	return fmt.Sprintf("**%.2f×** raw", rate/raw)
}

// anon runs the anon phase: durable sends each authorised by an
// anonymous token, which the relay spends durably (one badgertokens
// transaction and sync per spend).
func (g *gen) anon(ctx context.Context) error {
	n := min(g.f.anonMessages, len(g.envs))
	ik, err := deliverytoken.GenerateIssuerKey()
	if err != nil {
		return err
	}
	if g.issuerDER, err = ik.MarshalPKCS8(); err != nil {
		return err
	}
	defer func() { g.issuerDER, g.anonAuths = nil, nil }()
	if err := os.WriteFile(filepath.Join(g.tmp, "issuer.der"), g.issuerDER, 0o600); err != nil {
		return err
	}
	g.logf("anon: issuing %d anonymous tokens", n)
	t0 := time.Now()
	for len(g.anonAuths) < n {
		req, pending, err := deliverytoken.RequestTokens(ik.Public(), loadTenant, min(deliverytoken.MaxBatch, n-len(g.anonAuths)))
		if err != nil {
			return err
		}
		resp, _, err := ik.Issue(req)
		if err != nil {
			return err
		}
		toks, err := pending.Finalize(resp)
		if err != nil {
			return err
		}
		for _, t := range toks {
			a, err := (&deliverytoken.SendAuthorization{Kind: deliverytoken.KindAnonymous, Anonymous: t}).Marshal()
			if err != nil {
				return err
			}
			g.anonAuths = append(g.anonAuths, base64.RawURLEncoding.EncodeToString(a))
		}
	}
	g.logf("anon: issued in %v", time.Since(t0).Round(time.Millisecond))
	conc := min(g.f.concurrency, n)
	p, err := g.startRelay(ctx, "anon", conc)
	if err != nil {
		return err
	}
	defer p.stop()
	saved := g.f.concurrency
	g.f.concurrency = conc
	defer func() { g.f.concurrency = saved }()
	g.logf("anon: %d sends with anonymous tokens, %d senders", n, conc)
	rate, lat, rcpu, scpu, err := g.closedLoop(ctx, p, "/relay/v1/send", n, true)
	if err != nil {
		return err
	}
	s := sorted(lat)
	verifiers := "badgertokens, one transaction and sync per spend"
	if g.f.memVerifiers {
		verifiers = "spent tokens in memory"
	}
	g.add(result{metric: fmt.Sprintf("durable %d-byte sealed sends with anonymous tokens", g.envSize()),
		goal: "(none; MAC-token sends ≥ 0.6× raw)", measured: fmt.Sprintf("%.0f msgs/s", rate), ratio: g.rawRatio(rate),
		conditions: fmt.Sprintf("%d senders, %d sends, closed loop, tokens issued beforehand; spends: %s; relay CPU %.1f µs/send, generator %.1f µs/send; p50 %.1f ms, p99 %.1f ms; load average %s → %s",
			conc, n, verifiers, us(rcpu, n), us(scpu, n), quantile(s, .5), quantile(s, .99), g.lastLoad, loadAvg())})
	return nil
}

// latency runs the latency phase: enqueue-ack latency at each offered
// rate, each on a fresh relay.
func (g *gen) latency(ctx context.Context) error {
	for _, rate := range g.f.rates {
		if err := g.latencyAt(ctx, rate); err != nil {
			return err
		}
	}
	return nil
}

func (g *gen) latencyAt(ctx context.Context, rate int) error {
	n := min(len(g.envs), int(float64(rate)*g.f.rateFor.Seconds()))
	if n < 1 {
		return errors.New("no sends: raise --rate-duration")
	}
	p, err := g.startRelay(ctx, fmt.Sprintf("latency-%d", rate), g.f.openConns)
	if err != nil {
		return err
	}
	defer p.stop()
	g.logf("latency: %d sends offered at %d/s over %d connections", n, rate, g.f.openConns)
	u := snapshot(p)
	_, lat, achieved, failed, err := g.openLoop(ctx, p, 0, n, rate)
	use := u.since(p)
	if err != nil {
		return fmt.Errorf("%d of %d sends failed: %w", failed, n, err)
	}
	s := sorted(lat)
	p99 := quantile(s, .99)
	g.add(result{metric: fmt.Sprintf("enqueue-ack latency at an offered %d msgs/s", rate),
		goal: "p99 ≤ 50 ms", measured: fmt.Sprintf("p50 %.1f ms, p99 %.1f ms, max %.1f ms", quantile(s, .5), p99, quantile(s, 1)),
		ratio:      fmt.Sprintf("p99 %.2f× the goal", p99/50),
		conditions: fmt.Sprintf("open loop, %d sends, %.0f/s achieved, over %d %s connections; latency from each send's scheduled time to its receipt (queueing for a connection included); %s%s", n, achieved, g.f.openConns, g.proto(), use, g.storeNote())})
	return nil
}

// memory runs the memory phase: the relay process's memory at the two
// idle connection counts.
func (g *gen) memory(ctx context.Context) error {
	p, err := g.startRelay(ctx, "memory", 4)
	if err != nil {
		return err
	}
	defer p.stop()
	m0, err := p.mem(ctx)
	if err != nil {
		return err
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var ms [2]memInfo
	for k, target := range g.f.conns {
		g.logf("memory: opening idle TLS connections up to %d", target)
		more, err := g.openIdle(ctx, p, target-len(conns))
		conns = append(conns, more...)
		if err != nil {
			return fmt.Errorf("after %d connections: %w", len(conns), err)
		}
		time.Sleep(time.Second)
		if ms[k], err = p.mem(ctx); err != nil {
			return err
		}
	}
	dn := float64(g.f.conns[1] - g.f.conns[0])
	rssSlope := float64(ms[1].RSS-ms[0].RSS) / dn
	heapSlope := float64(int64(ms[1].HeapInuse+ms[1].StackInuse)-int64(ms[0].HeapInuse+ms[0].StackInuse)) / dn
	g.add(result{metric: "relay memory per idle TLS connection (slope)",
		goal: "≤ 32 KB each", measured: fmt.Sprintf("%.1f KiB RSS (heap+stacks %.1f KiB)", rssSlope/1024, heapSlope/1024),
		ratio: fmt.Sprintf("%.2f× the goal", rssSlope/32768),
		conditions: fmt.Sprintf("between %d and %d connections (RSS %.0f → %.0f MiB, %d → %d goroutines; %.0f MiB with none); each a TLS 1.3 handshake and one HTTP/1.1 GET /healthz, then idle; measured in the relay process after a GC",
			g.f.conns[0], g.f.conns[1], mib(ms[0].RSS), mib(ms[1].RSS), ms[0].Goroutines, ms[1].Goroutines, mib(m0.RSS))})
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// openIdle opens n TLS connections to the relay, each after one request.
func (g *gen) openIdle(ctx context.Context, p *relayProc, n int) ([]net.Conn, error) {
	cfg := &tls.Config{RootCAs: g.pool, MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"}}
	var mu sync.Mutex
	var out []net.Conn
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := tls.Dialer{Config: cfg}
			for int(next.Add(1)) <= n && firstErr.Load() == nil {
				c, err := dialHealthy(ctx, &d, p.addr)
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				mu.Lock()
				out = append(out, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return out, *e
	}
	return out, nil
}

// dialHealthy dials addr with d and makes one request on the connection
// (healthz), so that the server holds it under its idle timeout, not its
// first-request one; on error the connection is closed.
func dialHealthy(ctx context.Context, d *tls.Dialer, addr string) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := healthz(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// healthz sends GET /healthz on c and reads the answer.
func healthz(c net.Conn) error {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+relayName+"\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 512), nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("healthz: status %d", resp.StatusCode)
	}
	return err
}

// e2e runs the e2e phase: every device holds a push channel; envelopes
// are sent at the low, then the high rate, and each one's latency runs
// from its scheduled send time to the push page that carries it.
func (g *gen) e2e(ctx context.Context) error {
	nLow := int(float64(g.f.e2eLow) * g.f.e2eFor.Seconds())
	nHigh := int(float64(g.f.e2eHigh) * g.f.e2eFor.Seconds())
	if nLow < 1 || nHigh < 1 {
		return errors.New("no sends: raise --e2e-duration")
	}
	if nLow+nHigh > len(g.envs) {
		nHigh = len(g.envs) - nLow
		if nHigh < 1 {
			return errors.New("too few --messages for the e2e rates")
		}
	}
	p, err := g.startRelay(ctx, "e2e", g.f.openConns)
	if err != nil {
		return err
	}
	defer p.stop()
	recv := make([]atomic.Int64, len(g.envs)) // Unix ns of delivery
	var bad atomic.Int64
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g.logf("e2e: opening %d push channels", len(g.devs))
	pushes, err := g.openPushes(pctx, p, g.devs)
	if err != nil {
		return err
	}
	var readers sync.WaitGroup
	for _, ps := range pushes {
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer ps.Close()
			for {
				pg, err := ps.Next(pctx)
				if err != nil {
					return
				}
				now := time.Now().UnixNano()
				for _, m := range pg.Messages {
					h, err := sealed.ParseHeader(m.Envelope)
					if err != nil {
						bad.Add(1)
						continue
					}
					if i, ok := g.ids[h.MessageID]; ok {
						recv[i].CompareAndSwap(0, now)
					} else {
						bad.Add(1)
					}
				}
				if n := len(pg.Messages); n > 0 {
					if err := ps.Ack(pctx, pg.Messages[n-1].Seq); err != nil {
						return
					}
				}
			}
		}()
	}
	for _, ph := range []struct {
		name     string
		from, n  int
		rate     int
		rateName string
	}{{"low", 0, nLow, g.f.e2eLow, "low"}, {"high", nLow, nHigh, g.f.e2eHigh, "high"}} {
		g.logf("e2e: %d sends at %d/s to %d online devices", ph.n, ph.rate, len(g.devs))
		u := snapshot(p)
		sched, _, achieved, failed, err := g.openLoop(ctx, p, ph.from, ph.n, ph.rate)
		if err != nil {
			return fmt.Errorf("%d of %d sends failed: %w", failed, ph.n, err)
		}
		// Wait for the deliveries, up to 10 s after the last send.
		deadline := time.Now().Add(10 * time.Second)
		var lat []time.Duration
		for {
			lat = lat[:0]
			for i := range ph.n {
				if r := recv[ph.from+i].Load(); r != 0 {
					lat = append(lat, time.Duration(r-sched[i].UnixNano()))
				}
			}
			if len(lat) == ph.n || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		use := u.since(p)
		s := sorted(lat)
		missing := ph.n - len(lat)
		g.add(result{metric: fmt.Sprintf("online delivery, send to push, %s load (%d msgs/s offered)", ph.rateName, ph.rate),
			goal: "report p50, p99", measured: fmt.Sprintf("p50 %.1f ms, p99 %.1f ms, max %.1f ms", quantile(s, .5), quantile(s, .99), quantile(s, 1)),
			ratio:      "—",
			conditions: fmt.Sprintf("%d sends (%.0f/s achieved, %d undelivered after 10 s) to %d devices each holding a WebSocket push channel over TLS; the devices verify each page's signed head and ack; %s", ph.n, achieved, missing, len(g.devs), use)})
		if missing > 0 {
			g.logf("e2e %s: %d of %d not delivered", ph.name, missing, ph.n)
		}
	}
	if b := bad.Load(); b > 0 {
		return fmt.Errorf("%d pushed envelopes were not the run's", b)
	}
	cancel()
	readers.Wait()
	return nil
}

// openPushes opens a push channel of each device and reads its first
// page.
func (g *gen) openPushes(ctx context.Context, p *relayProc, devs []*loadDevice) ([]*relay.Push, error) {
	pushes := make([]*relay.Push, len(devs))
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(devs) || firstErr.Load() != nil {
					return
				}
				d := devs[i]
				// One connection: a device's challenge and session
				// requests must share it, for the session's TLS channel
				// binding; a transport free to dial could send the second
				// on a new connection while the first is being returned
				// to its pool.
				tr := g.transport(1, false)
				tr.MaxConnsPerHost = 1
				hc := &http.Client{Transport: tr}
				c := &relay.Client{BaseURL: p.url, Name: relayName, RelayKey: p.key, HTTP: hc,
					Device: &relay.DeviceCredentials{Tenant: loadTenant, Device: d.id, Key: d.idk.Signing}}
				ps, err := c.Push(ctx, 0)
				if err == nil {
					_, err = ps.Next(ctx) // the first, empty page
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				hc.CloseIdleConnections() // the channel's connection is its own now
				pushes[i] = ps
			}
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		for _, ps := range pushes {
			if ps != nil {
				ps.Close()
			}
		}
		return nil, *e
	}
	return pushes, nil
}

// pushMemory runs the pushmem phase: the relay process's memory at two
// counts of idle push channels (online devices waiting for messages).
func (g *gen) pushMemory(ctx context.Context) error {
	n1, n2 := g.f.pushConns[0], g.f.pushConns[1]
	devs, err := deriveDevices(g.seed, n2)
	if err != nil {
		return err
	}
	p, err := g.startRelayWith(ctx, "pushmem", 4, n2, true)
	if err != nil {
		return err
	}
	defer p.stop()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var readers sync.WaitGroup
	defer readers.Wait()
	defer cancel()
	m0, err := p.mem(ctx)
	if err != nil {
		return err
	}
	var ms [2]memInfo
	from := 0
	for k, to := range []int{n1, n2} {
		g.logf("pushmem: opening idle push channels up to %d", to)
		pushes, err := g.openPushes(pctx, p, devs[from:to])
		if err != nil {
			return fmt.Errorf("after %d channels: %w", from, err)
		}
		for _, ps := range pushes {
			readers.Add(1)
			go func() {
				// An idle device: it reads (answering the relay's pings)
				// until the phase ends.
				defer readers.Done()
				defer ps.Close()
				for {
					if _, err := ps.Next(pctx); err != nil {
						return
					}
				}
			}()
		}
		from = to
		time.Sleep(time.Second)
		if ms[k], err = p.mem(ctx); err != nil {
			return err
		}
	}
	dn := float64(n2 - n1)
	rssSlope := float64(ms[1].RSS-ms[0].RSS) / dn
	heapSlope := float64(int64(ms[1].HeapInuse+ms[1].StackInuse)-int64(ms[0].HeapInuse+ms[0].StackInuse)) / dn
	g.add(result{metric: "relay memory per idle push channel (slope)",
		goal: "(≤ 32 KB, as a connection)", measured: fmt.Sprintf("%.1f KiB RSS (heap+stacks %.1f KiB)", rssSlope/1024, heapSlope/1024),
		ratio: fmt.Sprintf("%.2f× 32 KiB", rssSlope/32768),
		conditions: fmt.Sprintf("between %d and %d authenticated devices each holding a WebSocket push channel over TLS (RSS %.0f → %.0f MiB, %d → %d goroutines; %.0f MiB with none); measured in the relay process after a GC",
			n1, n2, mib(ms[0].RSS), mib(ms[1].RSS), ms[0].Goroutines, ms[1].Goroutines, mib(m0.RSS))})
	return nil
}

// report prints the results as a Markdown table.
func (g *gen) report(w io.Writer) {
	if len(g.results) == 0 {
		return
	}
	fmt.Fprintf(w, "moat-load: %s, GOMAXPROCS %d, %d CPUs, %s/%s, %s\n\n", time.Now().UTC().Format(time.RFC3339), runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintln(w, "| metric | goal | measured | ratio | conditions |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, r := range g.results {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r.metric, r.goal, r.measured, r.ratio, r.conditions)
	}
}

// usage is a snapshot of CPU time and load, to say in each row how much
// of the machine the relay and the generator had.
type usage struct {
	wall        time.Time
	relay, self time.Duration
	load        string
}

func snapshot(p *relayProc) usage {
	return usage{wall: time.Now(), relay: p.cpu(), self: selfCPU(), load: loadAvg()}
}

// since describes the CPU the relay and the generator used since u, in
// cores, and the machine's load average then and now.
func (u usage) since(p *relayProc) string {
	el := time.Since(u.wall).Seconds()
	return fmt.Sprintf("relay used %.2f cores, generator %.2f; load average %s → %s",
		(p.cpu()-u.relay).Seconds()/el, (selfCPU()-u.self).Seconds()/el, u.load, loadAvg())
}

// loadAvg returns the 1-minute load average (Linux), or "?".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
