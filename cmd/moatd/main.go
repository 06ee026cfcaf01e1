// Command moatd runs Moat's key directory service (docs/spec/directory-api.md)
// and administers it.
//
// Usage:
//
//	moatd init      --data DIR [--dev] [--tenant HEX] [--domain D] [--witness-vkeys FILE ...] [--quorum K] [--admin FILE.pub ...]
//	moatd directory --data DIR [--listen 127.0.0.1:8440] [--epoch 30s] [--witness URL ...] [--dev] [--tls-cert F --tls-key F]
//	moatd admin keygen        --out FILE [--ed25519]
//	moatd admin add-user      --name NAME [--user HEX]
//	moatd admin issue-code    --user HEX [--lifetime 24h]
//	moatd admin revoke-device --user HEX --device HEX [--reason lost] [--wipe-out FILE]
//	moatd admin list
//	moatd admin publish
//
// init creates a tenant in DIR: its CA, log and VRF keys and commitment
// secret (DIR/tenants/<tenant>/keys.json, mode 0600), its badger store,
// and its first epoch; it prints the tenant id, the log's origin and its
// public key, which each witness needs (moat-witness add-log). directory
// serves every tenant of DIR; with --dev it creates a development tenant
// on its first start. admin calls the admin API with an admin key (the
// service never holds admin keys).
//
// Flags can also be set from the environment: MOATD_DATA for --data,
// MOATD_LISTEN for --listen, and so on (MOATD_ and the flag's name in
// upper case with - as _).
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
		Use:   "moatd",
		Short: "Moat's key directory service",
		Long: `moatd runs Moat's key directory: org-certified device keys in a verifiable
map, committed to a transparency log whose checkpoints independent
witnesses cosign (docs/spec/directory.md, docs/spec/directory-api.md).`,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return cli.FlagsFromEnv(cmd, "MOATD_")
		},
	}
	root.AddCommand(newInitCmd(), newDirectoryCmd(), newServeCmd(), newAdminCmd())
	return root
}
