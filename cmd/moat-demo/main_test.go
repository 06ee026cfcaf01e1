package main

import (
	"strings"
	"testing"
)

// TestDemo runs the README's main command in-process and checks the
// transcript shows every step succeeding.
func TestDemo(t *testing.T) {
	var out strings.Builder
	if err := run(&out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{
		`"(sent second, delivered first)" [gap: 1 earlier message(s) pending]`,
		`"Hi Bob, this is Alice."`,
		"duplicate",
		`"Hello Alice. Bob here."`,
		"[ML-KEM ratchet step]",
		"rollback        restoring the older snapshot is refused",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("transcript lacks %q:\n%s", want, out.String())
		}
	}
}
