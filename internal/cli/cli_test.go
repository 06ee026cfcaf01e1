package cli

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/spf13/cobra"
)

func newTestCmd(run func(*cobra.Command) error) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use: "tool", // Run silences cobra's own error and usage output
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return FlagsFromEnv(cmd, "TOOL_")
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.Print(name)
			return run(cmd)
		},
	}
	cmd.Flags().StringVar(&name, "user-name", "default", "")
	return cmd
}

func TestRunExitStatus(t *testing.T) {
	for _, c := range []struct {
		err        error
		want       int
		wantStderr string
	}{
		{nil, 0, ""},
		{errors.New("boom"), 1, "tool: boom\n"},
		{ExitError(2), 2, ""},
		{errors.Join(errors.New("said why"), ExitError(3)), 3, ""},
	} {
		var stdout, stderr bytes.Buffer
		got := Run(context.Background(), newTestCmd(func(*cobra.Command) error { return c.err }), nil, &stdout, &stderr)
		if got != c.want || stderr.String() != c.wantStderr {
			t.Errorf("%v: status %d, stderr %q; want %d, %q", c.err, got, stderr.String(), c.want, c.wantStderr)
		}
	}
}

func TestFlagsFromEnv(t *testing.T) {
	t.Setenv("TOOL_USER_NAME", "from-env")
	var stdout, stderr bytes.Buffer
	ok := func(*cobra.Command) error { return nil }
	if s := Run(context.Background(), newTestCmd(ok), nil, &stdout, &stderr); s != 0 || stdout.String() != "from-env" {
		t.Fatalf("from the environment: status %d, %q", s, stdout.String())
	}
	stdout.Reset()
	// The command line wins over the environment.
	if s := Run(context.Background(), newTestCmd(ok), []string{"--user-name", "flag"}, &stdout, &stderr); s != 0 || stdout.String() != "flag" {
		t.Fatalf("from the command line: status %d, %q", s, stdout.String())
	}
}

func TestFlagsFromEnvBadValue(t *testing.T) {
	cmd := newTestCmd(func(*cobra.Command) error { return nil })
	var n int
	cmd.Flags().IntVar(&n, "count", 0, "")
	t.Setenv("TOOL_COUNT", "many")
	var stdout, stderr bytes.Buffer
	if s := Run(context.Background(), cmd, nil, &stdout, &stderr); s != 1 || !bytes.HasPrefix(stderr.Bytes(), []byte("tool: TOOL_COUNT: ")) {
		t.Fatalf("status %d, stderr %q", s, stderr.String())
	}
}
