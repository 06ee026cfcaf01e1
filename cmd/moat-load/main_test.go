package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// TestMain runs the relay subcommand when the test binary is started as
// the load run's relay process.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestRunSmoke runs every phase with tiny counts: the relay process
// starts, sends are stored and acknowledged, idle connections are held,
// and every message is pushed to its online device. It checks that each
// phase reports, not how fast.
func TestRunSmoke(t *testing.T) {
	var out, errs bytes.Buffer
	code := run(t.Context(), []string{"run", "--messages", "120", "--devices", "6", "--content", "100",
		"--concurrency", "4", "--raw-producers", "8", "--rate", "200", "--rate-duration", "200ms",
		"--anon-messages", "5", "--conns", "5,10", "--push-conns", "3,6", "--open-conns", "8", "--e2e-low", "20", "--e2e-high", "100", "--e2e-duration", "500ms",
		"--memory-verifiers"}, &out, &errs)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errs.String())
	}
	for _, want := range []string{
		"| raw badger group commit, 2048-byte values",
		"| HTTP+TLS alone: 2048-byte POSTs",
		"| durable 2048-byte sealed sends (100 B content) through the relay over TLS |",
		"| durable 2048-byte sealed sends with anonymous tokens |",
		"| durable 2048-byte sealed sends (100 B content) through the relay over TLS, 16 per send-batch request |",
		"| enqueue-ack latency at an offered 200 msgs/s |",
		"| enqueue-ack latency at an offered 200 msgs/s, 16 per send-batch request |",
		"| relay memory per idle TLS connection (slope) |",
		"between 5 and 10 connections",
		"| relay memory per idle push channel (slope) |",
		"between 3 and 6 authenticated devices",
		"| online delivery, send to push, low load (20 msgs/s offered) |",
		"| online delivery, send to push, high load (100 msgs/s offered) |",
		"0 undelivered",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestRunMemoryMailbox runs the send phases against a relay whose
// mailboxes are in memory (the relay's cost without its store), and says
// so in the rows.
func TestRunMemoryMailbox(t *testing.T) {
	var out, errs bytes.Buffer
	code := run(t.Context(), []string{"run", "--phases", "send,sendbatch", "--messages", "40", "--devices", "4", "--content", "100",
		"--concurrency", "4", "--batch", "4", "--memory-verifiers", "--memory-mailbox"}, &out, &errs)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errs.String())
	}
	if n := strings.Count(out.String(), "in-memory mailbox store (memmailbox), not durable"); n != 2 {
		t.Errorf("%d rows say the store is in memory, want 2:\n%s", n, out.String())
	}
}

// TestRunFlags checks that bad flags are refused before anything starts.
func TestRunFlags(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--conns", "10"},
		{"run", "--conns", "10,5"},
		{"run", "--push-conns", "4"},
		{"run", "--phases", "raw,bogus"},
		{"run", "--rate", "0"},
		{"run", "--batch", "65"},
	} {
		var out, errs bytes.Buffer
		if code := run(t.Context(), args, &out, &errs); code == 0 {
			t.Errorf("%v: exit 0, want an error", args)
		}
	}
}
