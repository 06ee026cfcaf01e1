// Command moat is Moat's user client: it enrols a device with an
// enrolment code, then sends and receives end-to-end encrypted 1:1
// messages, receives files, and shows each contact's verification state
// and this user's security timeline. Everything goes through the client
// SDK (package client, and client/attach for downloads); the device's
// keys and history live in its sealed local store
// (docs/spec/client-store.md) under --data.
//
// Usage:
//
//	moat enrol     --data DIR --code CODE --relay-key KEY [--server URL] (--passphrase-file F | --key-file F) [--request FILE | --approval FILE]
//	moat whoami    --data DIR
//	moat contacts  --data DIR
//	moat send      --data DIR USER TEXT [--reply ID | --edit ID | --react ID] [--mention USER ...] [--ttl D]
//	moat send      --data DIR USER --delete ID
//	moat send-file --data DIR USER PATH      (waits on an attachment upload in the SDK)
//	moat get-file  --data DIR MESSAGE --out PATH
//	moat sync      --data DIR
//	moat watch     --data DIR [--count N]
//	moat history   --data DIR USER [--limit N]
//	moat search    --data DIR QUERY
//	moat verify    --data DIR USER
//	moat timeline  --data DIR
//	moat approve   --data DIR --request FILE --expect FINGERPRINT --out FILE
//	moat wipe      --data DIR --instruction FILE
//
// The local store is unlocked with a passphrase (--passphrase-file, or
// the passphrase itself in MOAT_PASSPHRASE) or a key file (--key-file;
// enrol creates it if it does not exist). Every flag can also come from
// the environment: MOAT_ and the flag's name in upper case with - as _
// (MOAT_DATA, MOAT_KEY_FILE, MOAT_SERVER, MOAT_RELAY_KEY, ...).
// cmd/README.md describes the commands and their output.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/moat-im/moat/internal/cli"
	"github.com/spf13/cobra"
)

func main() { os.Exit(moatMain()) }

// moatMain runs the command line until SIGINT or SIGTERM and returns the
// exit status.
func moatMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Run(ctx, newRootCmd(), args, stdout, stderr)
}

func newRootCmd() *cobra.Command {
	o := &globalOptions{}
	root := &cobra.Command{
		Use:   "moat",
		Short: "Moat's end-to-end encrypted messenger, on the command line",
		Long: `moat is a Moat device on the command line. enrol makes this device one of
its user's, with an enrolment code from an admin (moatd admin issue-code);
the other commands use the device's sealed local store in --data.

Contacts are the organisation's users. Their device keys come from the key
directory and are verified (key transparency, witness cosignatures, the
org CA) before anything is sent; an unverified contact is refused, with
the reason.`,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return cli.FlagsFromEnv(cmd, envPrefix)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&o.Data, "data", "", "the device's data directory (its sealed local store)")
	pf.StringVar(&o.PassphraseFile, "passphrase-file", "", "file whose first line is the local store's passphrase (or MOAT_PASSPHRASE)")
	pf.StringVar(&o.KeyFile, "key-file", "", "the local store's key file (enrol creates it, mode 0600, if absent)")
	pf.DurationVar(&o.Timeout, "timeout", defaultTimeout, "timeout of one request to the server")
	root.AddCommand(
		newEnrolCmd(o), newWhoamiCmd(o), newContactsCmd(o),
		newSendCmd(o), newSendFileCmd(o), newGetFileCmd(o),
		newSyncCmd(o), newWatchCmd(o), newHistoryCmd(o), newSearchCmd(o),
		newVerifyCmd(o), newTimelineCmd(o), newApproveCmd(o), newWipeCmd(o),
		newDeleteLocalCmd(o), newDeleteConversationCmd(o),
	)
	return root
}

const envPrefix = "MOAT_"
