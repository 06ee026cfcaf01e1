package client_test

import (
	"context"
	"testing"

	"github.com/moat-im/moat/client"
)

// TestT24LastResortUseFlagged (adversarial case T24, "use of a
// last-resort key is flagged"): Alice drains Bob's one-time prekeys; the
// relay then serves his last-resort KEM prekey and flags it
// (LastResortUses). Bob's next Sync alerts him (AlertLastResortUsed),
// rotates the last-resort key early and replenishes, which clears the
// flag; Alice's message made with the old last-resort key still
// decrypts.
func TestT24LastResortUseFlagged(t *testing.T) {
	_, alice, bob, a, b := twoUsers(t)
	ctx := context.Background()
	st, err := b.PrekeyStatus(ctx)
	ok(t, err)
	if st.LastResortUses != 0 || st.OneTimeKEM == 0 {
		t.Fatalf("status before: %+v", st)
	}
	for range st.OneTimeKEM {
		ok(t, a.FetchBundleOf(ctx, b.Self().Device))
	}
	_, err = a.SendText(ctx, bob, "made with the last-resort key")
	ok(t, err)
	st, err = b.PrekeyStatus(ctx)
	ok(t, err)
	if st.LastResortUses == 0 || st.OneTimeKEM != 0 {
		t.Fatalf("the relay did not flag the last-resort key: %+v", st)
	}
	_, kemBefore, _, _, _ := b.MediumTermKeys()
	drain(b)
	syncAll(t, b)
	flagged := false
	for _, e := range drain(b) {
		if e.Kind == client.EventAlert && e.Alert.Kind == client.AlertLastResortUsed && e.Alert.Device == b.Self().Device {
			flagged = true
		}
	}
	if !flagged {
		t.Fatal("no last-resort alert")
	}
	if _, kem, _, _, _ := b.MediumTermKeys(); kem == kemBefore {
		t.Fatal("the last-resort key was not rotated")
	}
	st, err = b.PrekeyStatus(ctx)
	ok(t, err)
	if st.LastResortUses != 0 || st.OneTimeKEM == 0 || !st.LastResortKEM {
		t.Fatalf("status after the sync: %+v", st)
	}
	if h := history(t, b, alice); len(h) != 1 || h[0].Text != "made with the last-resort key" {
		t.Fatalf("history %+v", h)
	}
	// The flag is cleared: the next Sync raises nothing.
	syncAll(t, b)
	for _, e := range drain(b) {
		if e.Kind == client.EventAlert {
			t.Fatalf("alert again: %+v", e.Alert)
		}
	}
}
