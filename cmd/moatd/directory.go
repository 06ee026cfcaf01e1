package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/internal/atomicfile"
	"github.com/moat-im/moat/internal/httpserve"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/keyserver/store/badgerstore"
	"github.com/spf13/cobra"
)

type directoryOptions struct {
	Data            string
	Listen          string
	AddrFile        string
	Epoch           time.Duration
	Recosign        time.Duration
	Witnesses       []string
	WitnessTimeout  time.Duration
	Dev             bool
	Domain          string
	WitnessVkeys    []string
	TLSCert, TLSKey string
	LogFormat       string
	MemTableMB      int
	LogLevel        slog.Level
	ShutdownTimeout time.Duration
	// Relay also serves the blind relay (/relay/v1) with the directory as
	// its device directory (moatd serve).
	Relay     bool
	RelayName string
	// RelayUnlimited lifts the relay's rate limits (with Dev only).
	RelayUnlimited bool
	// RelayLimits sets some of the relay's rate limits
	// (--relay-limit NAME=RATE/BURST, repeatable).
	RelayLimits []string
}

func newDirectoryCmd() *cobra.Command { return directoryCmd(false) }

// newServeCmd is moatd serve: the directory and the relay in one process.
func newServeCmd() *cobra.Command { return directoryCmd(true) }

func directoryCmd(withRelay bool) *cobra.Command {
	o := directoryOptions{LogLevel: slog.LevelInfo, Relay: withRelay}
	cmd := &cobra.Command{
		Use:   "directory --data DIR [--listen ADDR] [--witness URL ...] [--dev]",
		Short: "Serve the key directory of every tenant in DIR",
		Long: `directory serves the key directory API (/v1, docs/spec/directory-api.md),
/healthz, /readyz and /metrics for every tenant in DIR; publishes an epoch
of each tenant every --epoch; and has the witnesses (--witness, the URL of
a C2SP tlog-witness such as moat-witness) cosign each new checkpoint, and
the unchanged one again every --recosign (keep it well below clients'
MaxAge). It stops gracefully on SIGINT or SIGTERM.

Plaintext HTTP is served only on a loopback address; elsewhere give
--tls-cert and --tls-key (TLS 1.3), or put a TLS proxy on the same host.

With --dev on an empty DIR, it first creates a development tenant (see
moatd init --dev) and prints its admin key files and a demo enrolment code.
Dev mode serves plaintext HTTP on loopback only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDirectory(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Data, "data", "", "data directory")
	cmd.MarkFlagRequired("data")
	f.StringVar(&o.Listen, "listen", "127.0.0.1:8440", "TCP address to listen on")
	f.StringVar(&o.AddrFile, "addr-file", "", "write the listening address to this file once serving")
	f.DurationVar(&o.Epoch, "epoch", 30*time.Second, "epoch cadence")
	f.DurationVar(&o.Recosign, "recosign", 15*time.Minute, "how often to have an unchanged checkpoint cosigned again")
	f.StringArrayVar(&o.Witnesses, "witness", nil, "witness URL, http(s)://host[:port][/prefix] (repeatable)")
	f.DurationVar(&o.WitnessTimeout, "witness-timeout", 10*time.Second, "timeout of one witness request")
	f.BoolVar(&o.Dev, "dev", false, "development mode: loopback plaintext HTTP, a dev tenant on first start")
	f.StringVar(&o.Domain, "domain", "moat.localhost", "with --dev on first start: the service's domain")
	f.StringArrayVar(&o.WitnessVkeys, "witness-vkeys", nil, "with --dev on first start: witness vkeys file (default: an embedded witness)")
	f.StringVar(&o.TLSCert, "tls-cert", "", "TLS certificate chain file (PEM)")
	f.StringVar(&o.TLSKey, "tls-key", "", "TLS private key file (PEM)")
	f.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	f.IntVar(&o.MemTableMB, "memtable-mb", 0, "badger memtable size of each tenant's store, MiB (0: the store's default; see docs/performance.md)")
	f.TextVar(&o.LogLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	f.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long to wait for in-flight requests on SIGINT/SIGTERM")
	if withRelay {
		cmd.Use = "serve --data DIR [--listen ADDR] [--relay-name NAME] [--witness URL ...] [--dev]"
		cmd.Short = "Serve the key directory and the blind relay in one process"
		cmd.Long = `serve runs everything moatd directory runs, and the blind relay
(/relay/v1, docs/spec/api.md) on the same listener, with the directory as
the relay's device directory: an enrolment or a revocation takes effect at
the relay at once. The relay keeps its mailboxes and prekeys in badger
stores under DIR/relay, and its signing key in DIR/relay/relay.key, made on
first start; DIR/relay/relay.pub is the public key that devices must get
from their organisation to detect a rolled-back relay (T40).

--relay-name is the name devices use to reach the relay (the host, and the
port if not the default), which device authentication binds to; it
defaults to the --listen address.

` + cmd.Long
		f.StringVar(&o.RelayName, "relay-name", "", "the relay's name as devices address it (default: the listen address)")
		f.BoolVar(&o.RelayUnlimited, "dev-unlimited", false, "with --dev: lift the relay's rate limits and token quotas (load and crash tests)")
		f.StringArrayVar(&o.RelayLimits, "relay-limit", nil, "set one of the relay's rate limits, NAME=RATE/BURST (per second; repeatable; names: "+strings.Join(relayLimitNames(), ", ")+"; e.g. send-per-address=500/2000 for an organisation behind one address)")
	}
	return cmd
}

func newLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, errors.New("--log-format must be text or json")
}

const devBanner = `
**********************************************************************
*  moatd DEV MODE: plaintext HTTP on loopback, keys in clear on disk, *
*  generated admin keys, an embedded witness. NOT FOR PRODUCTION.     *
**********************************************************************
`

func runDirectory(ctx context.Context, o directoryOptions, stdout, stderr io.Writer) error {
	log, err := newLogger(stderr, o.LogFormat, o.LogLevel)
	if err != nil {
		return err
	}
	tlsOn := o.TLSCert != "" || o.TLSKey != ""
	if tlsOn && (o.TLSCert == "" || o.TLSKey == "") {
		return errors.New("give both --tls-cert and --tls-key")
	}
	if !tlsOn && !httpserve.IsLoopback(o.Listen) {
		return fmt.Errorf("refusing plaintext HTTP on %s: listen on loopback, or give --tls-cert and --tls-key", o.Listen)
	}
	if o.RelayUnlimited && !o.Dev {
		return errors.New("--dev-unlimited needs --dev")
	}
	if _, err := (relayConfig{Limits: o.RelayLimits}).limitsChecked(); err != nil {
		return err
	}
	if o.Dev {
		if tlsOn || !httpserve.IsLoopback(o.Listen) {
			return errors.New("--dev serves plaintext HTTP on loopback only")
		}
		fmt.Fprint(stderr, devBanner)
		log.Warn("DEV MODE: plaintext HTTP on loopback; not for production")
	}
	ids, err := listTenants(o.Data)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		if !o.Dev {
			return fmt.Errorf("no tenant in %s: create one with moatd init", o.Data)
		}
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		id, err := createTenant(ctx, initOptions{Data: o.Data, Domain: o.Domain, WitnessVkeys: o.WitnessVkeys, Threshold: 2, Dev: true}, stdout, quiet)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}

	// Witnesses: the URLs given, and dev mode's embedded one.
	var wcs []service.WitnessClient
	for _, u := range o.Witnesses {
		w, err := service.NewHTTPWitness(u, &http.Client{})
		if err != nil {
			return err
		}
		wcs = append(wcs, w)
	}
	devKeys, err := devWitnessKeys(o.Data, false)
	if err != nil {
		return err
	}
	var devLogs map[string]*keys.LogPublicKey
	if devKeys != nil {
		devLogs = map[string]*keys.LogPublicKey{}
	}

	var stores []*badgerstore.Store
	defer func() {
		for _, s := range stores {
			if err := s.Close(); err != nil {
				log.Error("closing store", slog.Any("err", err))
			}
		}
	}()
	var tcs []service.TenantConfig
	for _, id := range ids {
		dir := tenantDir(o.Data, id)
		kid, fk, err := service.ReadKeyFile(filepath.Join(dir, keysFile))
		if err != nil {
			return err
		}
		if kid != id {
			return fmt.Errorf("%s holds the keys of tenant %s", dir, kid)
		}
		var info tenantInfo
		if b, err := os.ReadFile(filepath.Join(dir, infoFile)); err == nil {
			json.Unmarshal(b, &info)
		}
		if o.MemTableMB < 0 {
			return fmt.Errorf("--memtable-mb %d: must not be negative", o.MemTableMB)
		}
		st, err := openStore(ctx, dir, log, o.MemTableMB)
		if err != nil {
			return err
		}
		stores = append(stores, st)
		tc := service.TenantConfig{ID: id, Store: st, Keys: fk.TenantKeys(), Witnesses: wcs,
			KeyStore: &service.FileKeyStore{Path: filepath.Join(dir, keysFile), Tenant: id}}
		if devLogs != nil && info.Origin != "" {
			// The dev witness, like any witness, is configured with the
			// log's first key and follows its rotations.
			k, err := keys.ParseLogPublicKeyText(info.LogKey)
			if err != nil {
				return fmt.Errorf("%s: log key: %w", filepath.Join(dir, infoFile), err)
			}
			devLogs[info.Origin] = k
		}
		tcs = append(tcs, tc)
	}
	if devKeys != nil {
		ws, err := tlog.NewWitness(tlog.WitnessConfig{Keys: devKeys, Logs: devLogs,
			Store: &fileWitnessStore{dir: filepath.Join(o.Data, devDir, devWitnessSt)}})
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(o.Data, devDir, devWitnessSt), 0o700); err != nil {
			return err
		}
		lw := &service.LocalWitness{W: ws, ID: "dev-witness"}
		for i := range tcs {
			tcs[i].Witnesses = append(append([]service.WitnessClient(nil), tcs[i].Witnesses...), lw)
		}
	}
	if o.Dev {
		if ms, _ := filepath.Glob(filepath.Join(o.Data, devDir, "admin-*.key")); len(ms) > 0 {
			for _, m := range ms {
				log.Warn("DEV MODE admin key", slog.String("path", m))
			}
		}
	}

	svc, err := service.New(ctx, service.Options{
		Tenants: tcs, Logger: log, EpochInterval: o.Epoch, RecosignInterval: o.Recosign, WitnessTimeout: o.WitnessTimeout,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return err
	}
	handler := svc.Handler()
	var rs *relayServer
	if o.Relay {
		name := o.RelayName
		if name == "" {
			name = ln.Addr().String()
		}
		rs, err = openRelay(ctx, o.Data, name, svc, relayConfig{Dev: o.Dev, Unlimited: o.RelayUnlimited, Limits: o.RelayLimits}, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer rs.close(log)
		handler = rs.handler(handler)
	}
	srv := service.NewHTTPServer(handler, log)
	var sc httpserve.ServeConfig
	if tlsOn {
		srv.TLSConfig = httpserve.TLSConfig()
		sc.CertFile, sc.KeyFile = o.TLSCert, o.TLSKey
	}
	sc.Shutdown, sc.Logger = o.ShutdownTimeout, log
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
		if rs != nil {
			rs.relay.Close() // push channels are hijacked: Shutdown does not wait for them
		}
	}()
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(runCtx) }()
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpserve.Serve(ctx, srv, ln, sc) }()
	for _, t := range svc.Tenants() {
		log.Info("serving tenant", slog.String("tenant", t.ID().String()), slog.String("origin", t.Origin()))
	}
	log.Info("serving", slog.String("addr", ln.Addr().String()), slog.Bool("tls", tlsOn), slog.Int("witnesses", len(o.Witnesses)))
	if o.AddrFile != "" {
		if err := atomicfile.WriteFile(o.AddrFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			srv.Close()
			return err
		}
	}
	err = <-serveErr
	cancelRun()
	if rerr := <-runErr; err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
