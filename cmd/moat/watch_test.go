package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moat-im/moat/client/clienttest"
)

// TestWatchUntilInterrupted runs moat in process against a directory and
// relay on loopback: Bob's watch prints Alice's message as it arrives,
// and ends with status 0 when interrupted (its context cancelled, as
// SIGINT does in main).
func TestWatchUntilInterrupted(t *testing.T) {
	srv := clienttest.New(t)
	dir := t.TempDir()
	moat := func(ctx context.Context, stdout io.Writer, args ...string) int {
		var stderr bytes.Buffer
		code := run(ctx, args, stdout, &stderr)
		if code != 0 {
			t.Logf("moat %s: %s", strings.Join(args, " "), stderr.String())
		}
		return code
	}
	enrol := func(name string) (user string, flags []string) {
		u := srv.AddUser(name)
		flags = []string{"--data", filepath.Join(dir, name), "--key-file", filepath.Join(dir, name+".key")}
		args := append([]string{"enrol", "--server", srv.HTTP.URL, "--relay-key", srv.RelayKey.Public().String(), "--code", srv.IssueCode(u)}, flags...)
		if code := moat(t.Context(), io.Discard, args...); code != 0 {
			t.Fatalf("enrol %s: exit %d", name, code)
		}
		return u.String(), flags
	}
	_, alice := enrol("Alice")
	bob, bobFlags := enrol("Bob")
	srv.Publish()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- moat(ctx, pw, append([]string{"watch"}, bobFlags...)...)
		pw.Close()
	}()
	if code := moat(t.Context(), io.Discard, append([]string{"send", bob, "Are you watching?"}, alice...)...); code != 0 {
		t.Fatalf("send: exit %d", code)
	}
	line := regexp.MustCompile(`^[0-9a-f]{32} .* Alice: Are you watching\?$`)
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if line.MatchString(sc.Text()) {
			break
		}
		t.Logf("watch: %s", sc.Text())
	}
	if sc.Err() != nil || !line.MatchString(sc.Text()) {
		t.Fatalf("watch ended without the message (%v)", sc.Err())
	}
	cancel()
	go io.Copy(io.Discard, pr)
	if code := <-done; code != 0 {
		t.Fatalf("interrupted watch: exit %d, want 0", code)
	}
}
