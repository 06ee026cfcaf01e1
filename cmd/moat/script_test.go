package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/moat-im/moat/internal/scriptcmds"
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
	"waitfile":  scriptcmds.WaitFileCmd,
	"waitready": scriptcmds.WaitReadyCmd,
	"envfrom":   scriptcmds.EnvFrom,
	"glob":      scriptcmds.Glob,
	"perm":      scriptcmds.Perm,
}
