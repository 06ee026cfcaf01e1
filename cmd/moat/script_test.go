package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	// The scripts run moat as a subprocess of this test binary.
	testscript.Main(cleanupM{m}, map[string]func(){"moat": main})
}

// cleanupM runs the tests, then removes the binaries they built.
type cleanupM struct{ *testing.M }

func (m cleanupM) Run() int {
	code := m.M.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	return code
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// buildCommands builds moatd and moat, once per test binary, into a
// temporary directory, and returns it.
func buildCommands(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "moat-cli-test-"); buildErr != nil {
			return
		}
		for _, n := range []string{"moatd", "moat"} {
			build := exec.Command("go", "build", "-o", filepath.Join(binDir, n), "github.com/moat-im/moat/cmd/"+n)
			build.Stderr = os.Stderr
			if err := build.Run(); err != nil {
				buildErr = fmt.Errorf("building %s: %v", n, err)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// TestScript runs the transcripts in testdata/script with moat, and the
// real moatd built here from ./cmd/moatd.
func TestScript(t *testing.T) {
	bin := buildCommands(t)
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", bin+string(os.PathListSeparator)+env.Getenv("PATH"))
			return nil
		},
		Cmds: scriptCmds,
	})
}

// scriptCmds are the transcripts' own commands.
var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	"waitfile":  cmdWaitFile,
	"waitready": cmdWaitReady,
	"envfrom":   cmdEnvFrom,
	"glob":      cmdGlob,
	"perm":      cmdPerm,
}

func addr(ts *testscript.TestScript, file string) string {
	return "http://" + strings.TrimSpace(ts.ReadFile(file))
}

// waitfile FILE: waits up to 30s for FILE to exist.
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitfile file")
	}
	if !waitFile(ts.MkAbs(args[0]), 30*time.Second) {
		ts.Fatalf("%s did not appear", args[0])
	}
}

// waitFile waits up to d for path to exist.
func waitFile(path string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return true
		}
	}
	return false
}

// waitready ADDRFILE: waits up to 60s for GET /readyz to answer 200.
func cmdWaitReady(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitready addrfile")
	}
	if err := waitReady(context.Background(), addr(ts, args[0]), 60*time.Second); err != nil {
		ts.Fatalf("%v", err)
	}
}

// waitReady waits up to d for GET base/readyz to answer 200.
func waitReady(ctx context.Context, base string, d time.Duration) error {
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
	return &notReadyError{u}
}

type notReadyError struct{ url string }

func (e *notReadyError) Error() string { return e.url + " not ready" }

// envfrom VAR FILE REGEXP: sets VAR to the first submatch of the
// (multi-line) REGEXP in FILE.
func cmdEnvFrom(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: envfrom var file regexp")
	}
	m := regexp.MustCompile("(?m)" + args[2]).FindStringSubmatch(ts.ReadFile(args[1]))
	if len(m) < 2 {
		ts.Fatalf("%s: no match for %s", args[1], args[2])
	}
	ts.Setenv(args[0], m[1])
}

// glob VAR PATTERN: sets VAR to the one file that matches PATTERN.
func cmdGlob(ts *testscript.TestScript, neg bool, args []string) {
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

// perm FILE MODE: FILE's permission bits are MODE (octal).
func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: perm file mode")
	}
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	if got := fmt.Sprintf("%o", fi.Mode().Perm()); (got == args[1]) == neg {
		ts.Fatalf("%s has mode %s", args[0], got)
	}
}
