package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/internal/httpserve"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/badgermailbox"
	"github.com/moat-im/moat/server/store/mailbox/memmailbox"
	"github.com/moat-im/moat/server/store/prekey/memprekey"
	"github.com/moat-im/moat/server/store/tokens/badgertokens"
)

// relayFlags configure the relay process.
type relayFlags struct {
	data, listen    string
	tlsCert, tlsKey string
	seed            string
	devices         int
	memoryVerifiers bool
	memoryMailbox   bool
	memTableMB      int
	memTables       int
	issuerKey       string
}

// relayHello is the line the relay process prints once it serves.
type relayHello struct {
	Addr string `json:"addr"`
	Key  string `json:"key"` // relay signing public key, text encoding
}

// memInfo is the relay process's memory after a GC, as /loadtest/mem
// answers.
type memInfo struct {
	RSS        int64  `json:"rss"`         // VmRSS after debug.FreeOSMemory
	HeapInuse  uint64 `json:"heap_inuse"`  // runtime.MemStats.HeapInuse
	StackInuse uint64 `json:"stack_inuse"` // goroutine stacks
	Sys        uint64 `json:"sys"`
	Goroutines int    `json:"goroutines"`
}

// newRelayCmd is the hidden relay subcommand: the relay the generator
// measures, in its own process so that its memory is its own. It serves
// the relay API over TLS with production stores (badgermailbox, and
// badgertokens for verifiers), an in-memory device directory of the
// run's derived devices, and rate limits off; and /loadtest/mem (memory
// after a GC) and /loadtest/discard (reads a body and answers like a send,
// storing nothing: the HTTP and TLS cost alone). It stops when its
// standard input closes.
func newRelayCmd() *cobra.Command {
	var f relayFlags
	cmd := &cobra.Command{
		Use:    "relay --data DIR --tls-cert F --tls-key F --seed HEX --devices N",
		Short:  "Run the relay under load (started by moat-load run)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRelay(cmd.Context(), f, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.data, "data", "", "data directory (created)")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:0", "listen address")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate (PEM)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "TLS key (PEM)")
	fl.StringVar(&f.seed, "seed", "", "hex seed of the run's devices")
	fl.IntVar(&f.devices, "devices", 1000, "devices to certify")
	fl.BoolVar(&f.memoryVerifiers, "memory-verifiers", false, "keep verifiers and spent tokens in memory instead of badgertokens")
	fl.BoolVar(&f.memoryMailbox, "memory-mailbox", false, "keep mailboxes in memory (memmailbox) instead of badgermailbox: the relay's cost without its store")
	fl.IntVar(&f.memTableMB, "mailbox-memtable-mb", 0, "badger memtable size of the mailbox store, MiB (0: the store's default)")
	fl.IntVar(&f.memTables, "mailbox-memtables", 0, "badger memtables of the mailbox store (0: the store's default)")
	fl.StringVar(&f.issuerKey, "issuer-key", "", "anonymous-token issuer key of the tenant (PKCS #8 DER file); none refuses anonymous tokens")
	for _, n := range []string{"data", "tls-cert", "tls-key", "seed"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func runRelay(ctx context.Context, f relayFlags, stdin io.Reader, stdout io.Writer) error {
	seed, err := hex.DecodeString(f.seed)
	if err != nil || len(seed) == 0 {
		return errors.New("--seed: want hex")
	}
	devs, err := deriveDevices(seed, f.devices)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// The generator closes our stdin to stop us (or dies).
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	var mb mailbox.Store
	if f.memoryMailbox {
		mb, err = memmailbox.New(memmailbox.Options{})
	} else {
		mb, err = badgermailbox.Open(ctx, badgermailbox.Options{Dir: filepath.Join(f.data, "mailbox"), Logger: log,
			MemTableSize: int64(f.memTableMB) << 20, NumMemtables: f.memTables})
	}
	if err != nil {
		return err
	}
	defer mb.Close()
	var ver relay.Verifiers
	var spent deliverytoken.SpentStore
	if f.memoryVerifiers {
		ver, spent = deliverytoken.NewMemoryVerifiers(), deliverytoken.NewMemorySpentStore()
	} else {
		tk, err := badgertokens.Open(ctx, badgertokens.Options{Dir: filepath.Join(f.data, "tokens"), Logger: log})
		if err != nil {
			return err
		}
		defer tk.Close()
		ver, spent = tk, tk
	}
	var issuers deliverytoken.IssuerKeys
	if f.issuerKey != "" {
		der, err := os.ReadFile(f.issuerKey)
		if err != nil {
			return err
		}
		ik, err := deliverytoken.ParseIssuerPrivateKey(der)
		if err != nil {
			return err
		}
		iks := deliverytoken.NewMemoryIssuerKeys()
		iks.Add(loadTenant, ik.Public())
		issuers = iks
	}
	dir := relay.NewMemoryDirectory()
	until := time.Now().Add(24 * time.Hour)
	for _, d := range devs {
		dir.Add(loadTenant, d.id, d.user, d.idk.Public(), until)
		if err := ver.Add(d.mailbox(), d.verifier()); err != nil {
			return err
		}
	}
	key, err := keys.GenerateRelaySigningKey(rand.Reader)
	if err != nil {
		return err
	}
	off := relay.Rate{PerSecond: -1}
	rl, err := relay.New(relay.Options{
		Name: relayName, SigningKey: key, Directory: dir, Mailboxes: mb, Prekeys: memprekey.New(0),
		Verifiers: ver, Spent: spent, Issuers: issuers, Logger: log,
		Limits: relay.Limits{PerAddress: off, Challenge: off, PerDevice: off, PerTenant: off,
			SendPerAddress: off, SendPerToken: off, SendPerMailbox: off, BundlePerTarget: off,
			MaxSessions: 4 * f.devices},
	})
	if err != nil {
		return err
	}
	defer rl.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /loadtest/mem", func(w http.ResponseWriter, _ *http.Request) {
		b, _ := json.Marshal(readMem())
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	receipt := make([]byte, receiptSize)
	mux.HandleFunc("POST /loadtest/discard", func(w http.ResponseWriter, req *http.Request) {
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		w.Header().Set("Content-Type", httpserve.ContentBinary)
		w.Write(receipt)
	})
	mux.Handle("/", rl.Handler())

	if path := os.Getenv("MOAT_LOAD_RELAY_CPUPROFILE"); path != "" {
		pf, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pf.Close()
		defer pprof.StopCPUProfile()
	}
	if addr := os.Getenv("MOAT_LOAD_RELAY_PPROF"); addr != "" {
		// net/http/pprof's handlers on a side listener, for diagnosis.
		go http.ListenAndServe(addr, http.DefaultServeMux)
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return err
	}
	srv := httpserve.NewServer(mux, httpserve.Options{Logger: log})
	hello, _ := json.Marshal(relayHello{Addr: ln.Addr().String(), Key: key.Public().String()})
	fmt.Fprintf(stdout, "%s\n", hello)
	return httpserve.Serve(ctx, srv, ln, httpserve.ServeConfig{CertFile: f.tlsCert, KeyFile: f.tlsKey, Shutdown: 5 * time.Second, Logger: log})
}

// receiptSize is about the size of a send's receipt (a signed head and a
// sequence number), which /loadtest/discard answers with.
const receiptSize = 160

// readMem returns the process's memory after a GC that returns freed
// memory to the system.
func readMem() memInfo {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memInfo{RSS: rss(os.Getpid()), HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, Sys: ms.Sys, Goroutines: runtime.NumGoroutine()}
}

// rss returns the resident set size of process pid in bytes (Linux), or
// -1.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}
