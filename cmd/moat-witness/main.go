// Command moat-witness is a C2SP tlog-witness for Moat's transparency
// logs: an organisation or its external auditor runs it independently of
// the key directory, and the directory asks it to cosign each new
// checkpoint. It cosigns only checkpoints that are consistent with the
// last one it cosigned for that log, so a log cannot show a split view to
// clients that require a quorum of witnesses (docs/spec/tlog.md §Witness).
//
// Usage:
//
//	moat-witness init    --dir D --name NAME [--mldsa]
//	moat-witness vkeys   --dir D
//	moat-witness add-log --dir D --origin ORIGIN --key LOGKEY
//	moat-witness serve   --dir D [--listen 127.0.0.1:8080] [--log-format text|json] [--log-level info]
//
// init generates the witness's Ed25519 key (and with --mldsa an ML-DSA-44
// key) under the cosigner NAME, stores their seeds in D (mode 0600), and
// prints the vkeys for the trust bundle. add-log configures a log by
// origin and public key, in its text encoding moat-log1:… or as hex of its
// binary encoding. serve answers, over HTTP:
//
//	POST /add-checkpoint          C2SP tlog-witness add-checkpoint
//	GET  /<hex sha256(origin)>/checkpoint   latest cosigned checkpoint
//	GET  /healthz                 liveness
//	GET  /metrics                 Prometheus metrics
//
// serve reads the configuration once at start: restart it after add-log.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/moat-im/moat/internal/cli"
	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Run(ctx, newRootCmd(), args, stdout, stderr)
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "moat-witness",
		Short: "A C2SP tlog-witness for Moat transparency logs",
		Long: `moat-witness cosigns checkpoints of Moat transparency logs (C2SP
tlog-witness), after checking that each is consistent with the last one it
cosigned for that log. Run it independently of the logs it witnesses.`,
	}
	root.AddCommand(newInitCmd(), newVkeysCmd(), newAddLogCmd(), newServeCmd())
	return root
}

func dirFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "dir", "", "witness directory (keys, configuration, state)")
	cmd.MarkFlagRequired("dir")
}

func newInitCmd() *cobra.Command {
	var dir, name string
	var withMLDSA bool
	cmd := &cobra.Command{
		Use:   "init --dir D --name NAME [--mldsa]",
		Short: "Create a witness directory with new keys and print the vkeys",
		Long: `init creates the witness directory D, generates an Ed25519 witness key
(and, with --mldsa, an ML-DSA-44 key) under the cosigner name NAME, stores
the seeds in D with mode 0600, and prints the public keys as C2SP vkeys,
one per line, for the trust bundle of every log this witness serves.

init never overwrites an existing witness.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := initDir(dir, name, withMLDSA)
			if err != nil {
				return err
			}
			for _, v := range d.vkeys() {
				fmt.Fprintln(cmd.OutOrStdout(), v)
			}
			return nil
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().StringVar(&name, "name", "", "cosigner name, such as witness.example.com/w1 (no spaces or '+')")
	cmd.MarkFlagRequired("name")
	cmd.Flags().BoolVar(&withMLDSA, "mldsa", false, "also generate an ML-DSA-44 key (recommended)")
	return cmd
}

func newVkeysCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "vkeys --dir D",
		Short: "Print the witness's vkeys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := loadDir(dir)
			if err != nil {
				return err
			}
			for _, v := range d.vkeys() {
				fmt.Fprintln(cmd.OutOrStdout(), v)
			}
			return nil
		},
	}
	dirFlag(cmd, &dir)
	return cmd
}

func newAddLogCmd() *cobra.Command {
	var dir, origin, key string
	cmd := &cobra.Command{
		Use:   "add-log --dir D --origin ORIGIN --key LOGKEY",
		Short: "Configure a log to witness",
		Long: `add-log configures the log ORIGIN with public key LOGKEY, given in its
text encoding (moat-log1:…) or as hex of its binary encoding. The witness
verifies both of the log's signature lines (Ed25519 and ML-DSA-65) on every
checkpoint. An origin that is already configured is refused.

A running serve picks the log up when restarted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := loadDir(dir)
			if err != nil {
				return err
			}
			k, err := parseLogKey(key)
			if err != nil {
				return err
			}
			if err := d.addLog(origin, k); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added log %s\nmonitoring path /%s/checkpoint\n", origin, originFile(origin))
			return nil
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().StringVar(&origin, "origin", "", "the log's origin line")
	cmd.MarkFlagRequired("origin")
	cmd.Flags().StringVar(&key, "key", "", "the log's public key: moat-log1:… or hex")
	cmd.MarkFlagRequired("key")
	return cmd
}

func newServeCmd() *cobra.Command {
	o := serveOptions{
		Timeouts: defaultTimeouts,
	}
	cmd := &cobra.Command{
		Use:   "serve --dir D [--listen ADDR]",
		Short: "Serve the C2SP tlog-witness HTTP API",
		Long: `serve answers add-checkpoint requests and serves the latest cosigned
checkpoint of each log, /healthz and /metrics. It stops gracefully on
SIGINT or SIGTERM. Only one serve may use a directory at a time.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch strings.ToLower(o.LogFormat) {
			case "text", "json":
			default:
				return errors.New("--log-format must be text or json")
			}
			return serve(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	dirFlag(cmd, &o.Dir)
	cmd.Flags().StringVar(&o.Listen, "listen", "127.0.0.1:8080", "TCP address to listen on")
	cmd.Flags().StringVar(&o.AddrFile, "addr-file", "", "write the listening address to this file once ready (for --listen with port 0)")
	cmd.Flags().StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	cmd.Flags().TextVar(&o.LogLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	cmd.Flags().DurationVar(&o.Timeouts.Shutdown, "shutdown-timeout", defaultTimeouts.Shutdown, "how long to wait for in-flight requests on SIGINT/SIGTERM")
	return cmd
}

// timeouts are the HTTP server's limits.
type timeouts struct {
	ReadHeader, Read, Write, Idle, Shutdown time.Duration
}

var defaultTimeouts = timeouts{
	ReadHeader: 5 * time.Second,
	Read:       30 * time.Second,
	Write:      30 * time.Second,
	Idle:       120 * time.Second,
	Shutdown:   15 * time.Second,
}
