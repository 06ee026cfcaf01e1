package main

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestDirectoryChangesSurviveKill runs moatd serve as a subprocess,
// revokes an enrolled device and enrols another through the admin API and
// the enrolment endpoint, then kills the server with SIGKILL before the
// next epoch (an hour away) and restarts it on the same data directory:
// the relay still refuses the revoked device and still accepts the new
// one, as it did before the kill. Both changes were acknowledged; the
// directory makes them durable before it answers (docs/spec/directory.md
// §Storage). So is the first admin's approval of a log key rotation
// (§Lodged approvals): after the kill the second admin is proposed the
// same new key, and its approval applies the rotation.
func TestDirectoryChangesSurviveKill(t *testing.T) {
	ctx := context.Background()
	bin := buildMoatd(t)
	data := t.TempDir()
	srv := startServe(t, bin, data)
	old := enrolDemo(t, bin, srv) // published

	// A device enrolled after the epoch, with a new user's code.
	user := regexp.MustCompile(`(?m)^user (\S+)$`).FindStringSubmatch(adminRun(t, bin, srv, "add-user", "--name", "Dana"))
	if user == nil {
		t.Fatal("no user id from moatd admin add-user")
	}
	code := regexp.MustCompile(`(?m)^code (\S+)$`).FindStringSubmatch(adminRun(t, bin, srv, "issue-code", "--user", user[1]))
	if code == nil {
		t.Fatal("no code from moatd admin issue-code")
	}
	enrolled := enrolCode(t, srv, code[1])
	adminRun(t, bin, srv, "revoke-device", "--user", old.cert.User.String(), "--device", old.cert.Device.String(), "--reason", "lost")

	accepted := func(d *enrolledDevice, url string) bool {
		t.Helper()
		var v [32]byte
		v[0] = 1
		return relayClient(t, d, data, url).AddVerifier(ctx, v) == nil
	}
	if accepted(old, srv.url) || !accepted(enrolled, srv.url) {
		t.Fatal("before the kill: the relay does not follow the directory")
	}

	// The first of two approvals of a log key rotation.
	rot := adminRun(t, bin, srv, "rotate-log-key")
	fp := regexp.MustCompile(`(?m)^bundle \d+: new log key ([0-9a-f]{64})$`).FindStringSubmatch(rot)
	if fp == nil || !strings.Contains(rot, "approved: 1 of 2 approvals") {
		t.Fatalf("first rotation approval: %q", rot)
	}

	boot := srv // printed the admin key
	srv.kill()
	srv = startServe(t, bin, data)
	if accepted(old, srv.url) {
		t.Fatal("the relay accepts the revoked device again after a SIGKILL")
	}
	if !accepted(enrolled, srv.url) {
		t.Fatal("the relay refuses the device enrolled before the SIGKILL")
	}
	// The next epoch publishes both.
	publishEpoch(t, bin, &serverProc{url: srv.url, stdout: boot.stdout})
	if accepted(old, srv.url) || !accepted(enrolled, srv.url) {
		t.Fatal("after the next epoch: the relay does not follow the directory")
	}
	// The second admin approves the rotation lodged before the kill.
	rot = adminRunAs(t, bin, &serverProc{url: srv.url, stdout: boot.stdout}, 1, "rotate-log-key", "--expect", fp[1])
	if !strings.Contains(rot, "applied: bundle") {
		t.Fatalf("second rotation approval after the kill: %q", rot)
	}
	srv.stop(t)
}

// adminRunAs is adminRun with the i-th admin key the server printed.
func adminRunAs(t testing.TB, bin string, p *serverProc, i int, args ...string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^admin-key (\S+)$`).FindAllStringSubmatch(p.stdout.String(), -1)
	if len(m) <= i {
		t.Fatalf("no admin key %d in %q", i, p.stdout)
	}
	cmd := exec.Command(bin, append([]string{"admin"}, args...)...)
	cmd.Env = append(os.Environ(), "MOATD_SERVER="+p.url, "MOATD_KEY="+m[i][1])
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("moatd admin %v: %v\n%s", args, err, out)
	}
	return string(out)
}
