package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat-im/moat/internal/scriptcmds"
)

// TestREADMEQuickstart runs the quickstart of the repository's README.md,
// as written: the server block (one command) in the background, then the
// chat block with sh. The commands are read from the README, so the docs
// and the test cannot drift. Two rewrites only: `go run ./cmd/NAME` runs
// NAME built once here (the same package, without a build per command),
// and /tmp/ is a temporary directory. The server listens on a free port
// (MOATD_LISTEN, MOATD_ADDR_FILE), which the chat block reaches through
// MOATD_SERVER and MOAT_SERVER.
func TestREADMEQuickstart(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Fatalf("the README's quickstart is a sh script: %v", err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	server, err := quickstartBlock(readme, "server")
	if err != nil {
		t.Fatal(err)
	}
	chat, err := quickstartBlock(readme, "chat")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.TrimSpace(server), "\n"); n != 0 {
		t.Fatalf("the server block is %d lines, want one command", n+1)
	}

	bin := buildCommands(t)
	tmp := t.TempDir()
	rewrite := func(s string) string {
		s = regexp.MustCompile(`go run \./cmd/([a-z-]+)`).ReplaceAllString(s, "$1")
		return strings.ReplaceAll(s, "/tmp/", tmp+"/")
	}
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	addrFile := filepath.Join(tmp, "addr")
	var serverOut bytes.Buffer
	srv := exec.Command("sh", "-c", "exec "+rewrite(server))
	srv.Env = append(env, "MOATD_LISTEN=127.0.0.1:0", "MOATD_ADDR_FILE="+addrFile, "MOATD_EPOCH=1h")
	srv.Stdout, srv.Stderr = &serverOut, &serverOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		srv.Process.Signal(syscall.SIGINT)
		srv.Wait()
	}
	defer func() {
		stop()
		if t.Failed() {
			t.Logf("server:\n%s", serverOut.String())
		}
	}()
	if !scriptcmds.WaitFile(addrFile, 60*time.Second) {
		t.Fatal("the server did not start")
	}
	b, err := os.ReadFile(addrFile)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + strings.TrimSpace(string(b))
	if err := scriptcmds.WaitReady(context.Background(), base, 60*time.Second); err != nil {
		t.Fatal(err)
	}

	sh := exec.Command("sh", "-e", "-x", "-c", rewrite(chat))
	sh.Dir = tmp
	sh.Env = append(env, "MOATD_SERVER="+base, "MOAT_SERVER="+base)
	out, err := sh.CombinedOutput()
	t.Logf("quickstart:\n%s", out)
	if err != nil {
		t.Fatalf("quickstart: %v", err)
	}
	for _, want := range quickstartWants {
		if !regexp.MustCompile("(?m)" + want).Match(out) {
			t.Errorf("quickstart output lacks %q", want)
		}
	}
}

// quickstartWants are what the chat block must print: Bob receives
// Alice's message, Alice Bob's, and her history has both; contacts
// shows Bob verified.
var quickstartWants = []string{
	`^[0-9a-f]{32} +Bob +- +1 +epoch \d+$`,
	`^verified\b.*Bob`,
	`Alice.*: Hello Bob, this is end-to-end encrypted\.$`,
	`Bob.*: Hi Alice! Received\.$`,
}

// quickstartBlock returns the code block that follows the line
// <!-- quickstart:NAME --> in readme.
func quickstartBlock(readme []byte, name string) (string, error) {
	marker := "<!-- quickstart:" + name + " -->\n"
	_, rest, ok := strings.Cut(string(readme), marker)
	if !ok {
		return "", fmt.Errorf("README.md: no %q", strings.TrimSpace(marker))
	}
	rest, ok = strings.CutPrefix(rest, "```sh\n")
	if !ok {
		return "", fmt.Errorf("README.md: no sh block after %q", strings.TrimSpace(marker))
	}
	block, _, ok := strings.Cut(rest, "```\n")
	if !ok {
		return "", fmt.Errorf("README.md: unterminated block after %q", strings.TrimSpace(marker))
	}
	return block, nil
}

func TestQuickstartBlock(t *testing.T) {
	readme := []byte("x\n<!-- quickstart:a -->\n```sh\none\ntwo\n```\n<!-- quickstart:b -->\nno block\n<!-- quickstart:c -->\n```sh\nopen\n")
	if got, err := quickstartBlock(readme, "a"); err != nil || got != "one\ntwo\n" {
		t.Errorf("block a: %q, %v", got, err)
	}
	for _, name := range []string{"b", "c", "d"} {
		if got, err := quickstartBlock(readme, name); err == nil {
			t.Errorf("block %s: %q, want an error", name, got)
		}
	}
}
