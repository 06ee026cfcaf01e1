package main

import (
	"strings"
	"testing"

	"github.com/moat-im/moat/server/relay"
)

// TestRelayLimitFlag: --relay-limit sets the named rate limits and leaves
// the others at their defaults; a malformed value is refused at start
// with a message naming the flag.
func TestRelayLimitFlag(t *testing.T) {
	l, err := relayConfig{Limits: []string{"send-per-address=500/2000", "per-device=0.5/3"}}.limitsChecked()
	if err != nil {
		t.Fatal(err)
	}
	if l.SendPerAddress != (relay.Rate{PerSecond: 500, Burst: 2000}) || l.PerDevice != (relay.Rate{PerSecond: 0.5, Burst: 3}) {
		t.Fatalf("limits = %+v", l)
	}
	if l.PerAddress != (relay.Rate{}) || l.SendPerMailbox != (relay.Rate{}) {
		t.Fatalf("an unnamed limit changed: %+v", l)
	}
	for _, bad := range []string{"send-per-address", "send-per-address=500", "no-such=1/1", "per-device=0/1",
		"per-device=-1/1", "per-device=1/0", "per-device=NaN/1", "per-device=Inf/1", "per-device=1/x"} {
		if _, err := (relayConfig{Limits: []string{bad}}).limitsChecked(); err == nil || !strings.Contains(err.Error(), "--relay-limit") {
			t.Errorf("%q: err = %v, want a --relay-limit error", bad, err)
		}
	}
	// --dev-unlimited lifts every limit.
	l, err = relayConfig{Unlimited: true}.limitsChecked()
	if err != nil || l.SendPerAddress.PerSecond >= 0 || l.BundlePerTarget.PerSecond >= 0 {
		t.Fatalf("unlimited: %+v, %v", l, err)
	}
}
