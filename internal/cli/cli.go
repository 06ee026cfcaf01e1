// Package cli holds the command-line plumbing shared by moat, moatd and
// moat-witness: running a cobra root command to an exit status, and flags
// read from the environment.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// ExitError is an exit status other than 1 for a command that failed on
// purpose and already said why.
type ExitError int

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// Run runs root with the command line args and returns the exit status:
// 0, the status of an ExitError, or else 1 after printing the error to
// stderr, prefixed with the command's name. Cobra itself prints neither
// errors nor usage on an error, and adds no completion command.
func Run(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SilenceUsage = true
	root.SilenceErrors = true
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee ExitError
		if errors.As(err, &ee) {
			return int(ee)
		}
		fmt.Fprintf(stderr, "%s: %v\n", root.Name(), err)
		return 1
	}
	return 0
}

// FlagsFromEnv sets every flag of cmd that the command line did not set
// from the environment variable prefix+NAME, if that is set, where NAME is
// the flag's name in upper case with - as _.
func FlagsFromEnv(cmd *cobra.Command, prefix string) error {
	var err error
	set := func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		name := prefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("%s: %w", name, serr)
				return
			}
			f.Changed = true
		}
	}
	cmd.Flags().VisitAll(set)
	cmd.InheritedFlags().VisitAll(set)
	return err
}
