// Package scriptcmds holds the testscript commands that the transcript
// tests of moat, moatd and moat-witness share (testdata/script/*.txtar).
// Only tests import it.
package scriptcmds

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// Addr returns the base URL of the server whose host:port is in file.
func Addr(ts *testscript.TestScript, file string) string {
	return "http://" + strings.TrimSpace(ts.ReadFile(file))
}

// WaitFile waits up to d for path to exist.
func WaitFile(path string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return true
		}
	}
	return false
}

// WaitReady waits up to d for GET base/readyz to answer 200.
func WaitReady(ctx context.Context, base string, d time.Duration) error {
	u := base + "/readyz"
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("%s not ready", u)
}

// WaitFileCmd is waitfile FILE: waits up to 30s for FILE to exist.
func WaitFileCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitfile file")
	}
	if !WaitFile(ts.MkAbs(args[0]), 30*time.Second) {
		ts.Fatalf("%s did not appear", args[0])
	}
}

// WaitReadyCmd is waitready ADDRFILE: waits up to 60s for GET /readyz to
// answer 200.
func WaitReadyCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitready addrfile")
	}
	if err := WaitReady(context.Background(), Addr(ts, args[0]), 60*time.Second); err != nil {
		ts.Fatalf("%v", err)
	}
}

// EnvFrom is envfrom VAR FILE REGEXP: sets VAR to the first submatch of
// the (multi-line) REGEXP in FILE.
func EnvFrom(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: envfrom var file regexp")
	}
	m := regexp.MustCompile("(?m)" + args[2]).FindStringSubmatch(ts.ReadFile(args[1]))
	if len(m) < 2 {
		ts.Fatalf("%s: no match for %s", args[1], args[2])
	}
	ts.Setenv(args[0], m[1])
}

// Glob is glob VAR PATTERN: sets VAR to the one file that matches
// PATTERN.
func Glob(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: glob var pattern")
	}
	m, err := filepath.Glob(ts.MkAbs(args[1]))
	ts.Check(err)
	if len(m) != 1 {
		ts.Fatalf("%s: %d matches, want 1", args[1], len(m))
	}
	ts.Setenv(args[0], m[0])
}

// Perm is perm FILE MODE: FILE's permission bits are MODE (octal, as %o
// prints it); with !, they are not.
func Perm(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: perm file mode")
	}
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	if got := fmt.Sprintf("%o", fi.Mode().Perm()); (got == args[1]) == neg {
		ts.Fatalf("%s has mode %s", args[0], got)
	}
}
