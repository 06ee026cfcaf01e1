package client_test

import (
	"context"
	"errors"
	"testing"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/clienttest"
)

// TestFollowsTrustRotations: the organisation rotates its log key, then
// its CA, then replaces its witness, through the admin API under dual
// control (moatd admin rotate-log-key, rotate-ca, set-witnesses). Devices enrolled before keep working: the
// first directory answer that does not verify under the bundle they
// pinned makes them follow the published transitions (kt
// FollowTransitions), adopt their re-issued certificates, and carry on. A device that stayed offline
// through both rotations and was then revoked still verifies its wipe
// instruction, signed by the new CA and naming its re-issued certificate,
// after following the transitions, and wipes itself.
func TestFollowsTrustRotations(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice, bob := s.AddUser("Alice"), s.AddUser("Bob")
	recheck := func(c *client.Config) { c.RecheckAfter = -1 } // every message asks the directory
	a1 := enrol(t, s, alice, nil, recheck)
	b := enrol(t, s, bob, nil, recheck)
	a2 := enrol(t, s, alice, a1, recheck)
	s.Publish()
	_, err := a1.SendText(ctx, bob, "before the rotations")
	ok(t, err)
	syncAll(t, b, a2)

	s.RotateLogKey()
	_, err = b.SendText(ctx, alice, "after the log key rotation")
	ok(t, err)
	syncAll(t, a1)
	if h := history(t, a1, bob); len(h) != 2 || h[1].Text != "after the log key rotation" {
		t.Fatalf("Alice's history after the log key rotation: %+v", h)
	}

	serial := a1.CertificateSerial()
	s.RotateCA()
	_, err = a1.SendText(ctx, bob, "after the CA rotation")
	ok(t, err)
	if a1.CertificateSerial() <= serial {
		t.Fatal("the device did not adopt its certificate re-issued by the new CA")
	}
	syncAll(t, b)
	if h := history(t, b, alice); len(h) != 3 || h[2].Text != "after the CA rotation" {
		t.Fatalf("Bob's history after the CA rotation: %+v", h)
	}
	// The witness is replaced; checkpoints are cosigned by the new one
	// only.
	s.ReplaceWitness()
	if _, err := b.Monitor(ctx); err != nil { // Bob's first directory request since
		t.Fatalf("monitoring after the witness change: %v", err)
	}
	_, err = b.SendText(ctx, alice, "after the witness change")
	ok(t, err)
	syncAll(t, a1)
	if h := history(t, a1, bob); len(h) != 4 || h[3].Text != "after the witness change" {
		t.Fatalf("Alice's history after the witness change: %+v", h)
	}
	// A device enrolled under the new CA and one from before talk.
	b2 := enrol(t, s, bob, b, recheck)
	s.Publish()
	_, err = b2.SendText(ctx, alice, "from a device of the new CA")
	ok(t, err)
	syncAll(t, a1)
	if h := history(t, a1, bob); len(h) != 5 || h[4].Text != "from a device of the new CA" {
		t.Fatalf("Alice's history: %+v", h)
	}
	// Contacts verify after restarting from the store (the new bundle
	// was saved with the directory state).
	c, err := client.Open(ctx, a1.cfg, a1.st)
	ok(t, err)
	defer c.Close()
	if _, err := c.Contact(ctx, bob); err != nil {
		t.Fatalf("contact after reopening: %v", err)
	}

	// a2 missed every change; its wipe instruction is signed by the
	// new CA.
	s.RevokeDevice(alice, a2.Self().Device)
	if err := a2.Sync(ctx); !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("Sync of the revoked device that missed the rotations: %v", err)
	}
	if !a2.st.Wiped() {
		t.Fatal("not wiped")
	}
}
