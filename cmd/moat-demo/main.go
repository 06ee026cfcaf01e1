// Command moat-demo runs Moat's 1:1 protocol end to end in memory: two
// devices get identities and prekeys, Alice runs PQXDH against Bob's
// bundle, and the two exchange messages over the post-quantum Double
// Ratchet, including a sender-initiated ML-KEM step, an out-of-order
// delivery, a replay and a restore from serialised state.
//
// It is the runnable example of Moat's main job until the relay exists.
package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/pqxdh"
	"github.com/moat-im/moat/crypto/ratchet"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "moat-demo:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	now := time.Now().UTC()
	alice, err := keys.GenerateDeviceIdentity(rand.Reader)
	if err != nil {
		return err
	}
	bob, err := keys.GenerateDeviceIdentity(rand.Reader)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "alice identity  %s\n", alice.Signing.Public())
	fmt.Fprintf(w, "bob identity    %s\n", bob.Signing.Public())

	// Bob publishes a bundle: signed prekey, one-time prekey, signed
	// one-time ML-KEM-768 prekey. The private halves stay in his Prekeys.
	spk, err := keys.GenerateSignedPrekeyKey(rand.Reader)
	if err != nil {
		return err
	}
	opk, err := keys.GenerateOneTimePrekey(rand.Reader)
	if err != nil {
		return err
	}
	kpk, err := keys.GenerateKEMPrekeyKey(rand.Reader)
	if err != nil {
		return err
	}
	ring := pqxdh.NewPrekeys()
	ring.AddSignedPrekey(1, spk)
	ring.AddOneTimePrekey(100, opk)
	ring.AddKEMPrekey(200, kpk, false)
	bundle := &pqxdh.Bundle{
		Identity:      bob.Public(),
		SignedPrekey:  keys.SignSignedPrekey(1, now, spk.Public(), bob.Signing),
		OneTimePrekey: &pqxdh.OneTimePrekey{ID: 100, Key: opk.Public()},
		KEMPrekey:     keys.SignKEMPrekey(200, now, false, kpk.Public(), bob.Signing),
	}
	wire, err := bundle.Marshal()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "bob's bundle    %d bytes (X25519 signed + one-time prekeys, signed ML-KEM-768 prekey)\n", len(wire))

	// Alice fetches and checks the bundle, runs PQXDH and starts a session.
	fetched, err := pqxdh.ParseBundle(wire)
	if err != nil {
		return err
	}
	initial, res, err := pqxdh.Initiate(rand.Reader, alice, fetched)
	if err != nil {
		return err
	}
	preamble, err := initial.Marshal()
	if err != nil {
		return err
	}
	a, err := ratchet.NewInitiator(ratchet.Config{}, ratchet.Params{
		SharedKey: res.SharedKey, AD: res.AD, Self: alice.Public(), Peer: fetched.Identity,
	}, fetched.SignedPrekey.Key, fetched.KEMPrekey.Key, preamble)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "PQXDH           alice derived SK (transcript %x…)\n", res.Transcript[:8])

	// Alice sends two messages; the second arrives first.
	m1, err := a.Encrypt([]byte("Hi Bob, this is Alice."))
	if err != nil {
		return err
	}
	m2, err := a.Encrypt([]byte("(sent second, delivered first)"))
	if err != nil {
		return err
	}

	// Bob sees a first message with a PQXDH preamble: he looks up the
	// prekeys it names, derives SK, creates his session and decrypts.
	pre, err := ratchet.PeekPreamble(m2)
	if err != nil {
		return err
	}
	im, err := pqxdh.ParseInitialMessage(pre)
	if err != nil {
		return err
	}
	rk, err := ring.Lookup(im)
	if err != nil {
		return err
	}
	bres, err := pqxdh.Respond(bob, im, rk)
	if err != nil {
		return err
	}
	b, err := ratchet.NewResponder(ratchet.Config{}, ratchet.Params{
		SharedKey: bres.SharedKey, AD: bres.AD, Self: bob.Public(), Peer: im.Identity,
	}, rk.SignedPrekey, rk.KEMPrekey)
	if err != nil {
		return err
	}
	show := func(who string, s *ratchet.Session, msg []byte) error {
		r, err := s.Decrypt(msg)
		if err != nil {
			return fmt.Errorf("%s: %w", who, err)
		}
		extra := ""
		if r.Skipped > 0 {
			extra += fmt.Sprintf(" [gap: %d earlier message(s) pending]", r.Skipped)
		}
		if r.KEMStep {
			extra += " [ML-KEM ratchet step]"
		}
		fmt.Fprintf(w, "%-15s chain %d #%d, %4d bytes: %q%s\n", who, r.Chain, r.N, len(msg), r.Plaintext, extra)
		return nil
	}
	if err := show("bob <- alice", b, m2); err != nil {
		return err
	}
	ring.Consume(im) // one-time prekeys deleted once the session works
	if err := show("bob <- alice", b, m1); err != nil {
		return err
	}
	if _, err := b.Decrypt(m1); errors.Is(err, ratchet.ErrDuplicate) {
		fmt.Fprintln(w, "replay          bob rejects a second delivery: duplicate")
	} else {
		return fmt.Errorf("replay was not rejected: %v", err)
	}

	reply, err := b.Encrypt([]byte("Hello Alice. Bob here."))
	if err != nil {
		return err
	}
	if err := show("alice <- bob", a, reply); err != nil {
		return err
	}

	// Alice mixes a fresh ML-KEM secret into her root on her own.
	a.ForceKEMStep()
	m3, err := a.Encrypt([]byte("New chain, post-quantum rekeyed by the sender alone."))
	if err != nil {
		return err
	}
	if err := show("bob <- alice", b, m3); err != nil {
		return err
	}

	// Bob's device restarts: his session is serialised and restored.
	saved, gen := b.Marshal(), b.Generation()
	b, err = ratchet.Unmarshal(ratchet.Config{}, saved, gen)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "restore         bob's state: %d bytes, generation %d\n", len(saved), gen)
	m4, err := b.Encrypt([]byte("Restored; my first message after a restore starts a fresh chain."))
	if err != nil {
		return err
	}
	if err := show("alice <- bob", a, m4); err != nil {
		return err
	}
	if _, err := ratchet.Unmarshal(ratchet.Config{}, saved, b.Generation()); errors.Is(err, ratchet.ErrRollback) {
		fmt.Fprintln(w, "rollback        restoring the older snapshot is refused")
	} else {
		return fmt.Errorf("rollback not detected: %v", err)
	}
	return nil
}
