// Command moat-load is the relay's load generator (issue #4 §Benchmarks,
// docs/performance.md §Relay). One run measures, side by side on the same
// machine:
//
//   - raw badger group commit of the envelopes' bytes (the baseline: one
//     transaction per drained batch, then one db.Sync, with the mailbox
//     store's badger options);
//   - the same envelopes POSTed over TLS to a handler that discards them
//     (HTTP and TLS alone);
//   - durable sealed sends through the relay over TLS, envelopes sealed
//     before the timed part, closed loop;
//   - the same in batches of --batch per POST /relay/v1/send-batch;
//   - the same with anonymous tokens, each spent durably;
//   - enqueue-ack latency at a fixed offered rate (open loop), one send
//     per request and --batch per send-batch request;
//   - the relay process's memory per idle TLS connection, and per idle
//     push channel of an authenticated device, as the slope between two
//     counts;
//   - online delivery latency, send to push on the WebSocket, at a low and
//     a high rate.
//
// Usage:
//
//	moat-load run [--phases raw,tls,send,sendbatch,anon,latency,latencybatch,memory,pushmem,e2e] [--batch 16] [--messages 50000] [--devices 1000]
//	              [--concurrency 256] [--rate 10000,5000,2000] [--conns 10000,18000] [--push-conns 2000,4000] ...
//
// cmd/README.md §moat-load describes every flag.
//
// The relay runs in a process of its own (the hidden subcommand relay,
// started by run), with a self-signed certificate made for the run, the
// production mailbox and token stores in a temporary directory, an
// in-memory device directory of the run's devices and its rate limits
// off. The generator shares the machine's cores with it.
package main

import (
	"context"
	"io"
	"os"

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
		Use:   "moat-load",
		Short: "Load generator for Moat's relay",
	}
	root.AddCommand(newRunCmd(), newRelayCmd())
	return root
}
