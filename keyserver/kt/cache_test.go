package kt_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// TestSignatureCacheInState: a value verified once fills the signature
// cache, which is part of MarshalState and survives RestoreClient byte
// for byte.
func TestSignatureCacheInState(t *testing.T) {
	w := newWorld(t, 72)
	c := w.client(t)
	// Bob's history, verified in full: 2 certificates and 3 entries. (A
	// lookup verifies only the last entry's signature, which
	// authenticates the others and the certificates they carry.)
	must(c.VerifyHistory(w.tenant, w.bob, kt.Position{}, must(w.d.History(w.bob, 0, 0)), at(2)))
	if n := c.SignatureCacheLen(); n != 5 {
		t.Fatalf("signature cache holds %d keys, want 5", n)
	}
	if !c.CertificateCached(w.b1.Certificate) || !c.EntryCached(w.b2.Entry) {
		t.Fatal("bob's certificate or entry not cached")
	}
	st := state(t, c)
	c2 := must(kt.RestoreClient(w.d.Config(maxAge), st))
	if c2.SignatureCacheLen() != 5 || !c2.CertificateCached(w.b2.Certificate) || !bytes.Equal(state(t, c2), st) {
		t.Fatal("signature cache did not survive MarshalState and RestoreClient")
	}
}

// TestSignatureCacheTamperedSignature: the directory serves, as a new
// version of alice's value, her certificate or her timeline entry
// byte-identical to the one the client verified and cached, except for
// one byte of the signature (in either half). The commitment check passes
// (the directory published the value), so the rejection must come from
// the value's signature check, which a cache keyed on less than the whole
// signed object would skip.
func TestSignatureCacheTamperedSignature(t *testing.T) {
	cert := func(v *org.UserValue, flip int) *org.UserValue {
		c := *v.Certificates[0]
		c.Signature = bytes.Clone(c.Signature)
		if flip >= 0 {
			c.Signature[flip] ^= 1
		}
		return &org.UserValue{Tenant: v.Tenant, User: v.User, Certificates: []*org.DeviceCertificate{&c}, Head: v.Head}
	}
	entry := func(v *org.UserValue, flip int) *org.UserValue {
		e := *v.Entries[len(v.Entries)-1]
		e.Signature = bytes.Clone(e.Signature)
		if flip >= 0 {
			e.Signature[flip] ^= 1
		}
		h := must(e.Hash())
		return &org.UserValue{Tenant: v.Tenant, User: v.User, Certificates: v.Certificates, Entries: []*org.Entry{&e},
			Head: org.TimelineHead{Seq: e.Seq, Hash: h}}
	}
	for _, tc := range []struct {
		name  string
		value func(v *org.UserValue, flip int) *org.UserValue
	}{{"certificate", cert}, {"entry", entry}} {
		for _, flip := range []int{10, 64 + 100} { // Ed25519 half, ML-DSA-65 half
			t.Run(tc.name, func(t *testing.T) {
				w := newWorld(t, 73)
				c := w.client(t)
				must(c.VerifyHistory(w.tenant, w.alice, kt.Position{}, must(w.d.History(w.alice, 0, 0)), at(2)))
				v := must(org.ParseUserValue(must(w.d.Records(org.Label{User: w.alice}))[0].Value))
				if !c.CertificateCached(v.Certificates[0]) || !c.EntryCached(v.Entries[len(v.Entries)-1]) {
					t.Fatal("alice's certificate and last entry are not cached: the test would not exercise the cache")
				}
				// Control: the same shape with the signature untouched is
				// accepted, from the cache.
				w.d.Inject(org.Label{User: w.alice}, must(tc.value(v, -1).Marshal()))
				must(w.d.PublishEpoch(at(3)))
				n := c.SignatureCacheLen()
				must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, c.TreeSize())), at(4)))
				if c.SignatureCacheLen() != n {
					t.Fatal("the control value was not served from the cache")
				}
				// The tampered signature.
				bad := tc.value(v, flip)
				if tc.name == "certificate" && c.CertificateCached(bad.Certificates[0]) ||
					tc.name == "entry" && c.EntryCached(bad.Entries[0]) {
					t.Fatal("tampered object has the cached key")
				}
				w.d.Inject(org.Label{User: w.alice}, must(bad.Marshal()))
				must(w.d.PublishEpoch(at(5)))
				before := state(t, c)
				_, err := c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, c.TreeSize())), at(6))
				var ke *kt.KTProofError
				if !errors.As(err, &ke) || ke.Step != kt.StepValue || !errors.Is(err, org.ErrBadSignature) {
					t.Fatalf("tampered signature: %v, want a value error with ErrBadSignature", err)
				}
				sameState(t, c, before)
			})
		}
	}
}

// TestSignatureCacheNotCommittedOnRejection: signatures verified for a
// response that is then rejected (here: the trusted checkpoint is stale at
// the step that accepts it) do not join the cache, so the state stays
// byte-identical.
func TestSignatureCacheNotCommittedOnRejection(t *testing.T) {
	w := newWorld(t, 74)
	c := w.client(t)
	must(c.UpdateCheckpoint(must(w.d.Consistency(0)), at(2)))
	before := state(t, c)
	resp := must(w.d.Lookup(w.bob, c.TreeSize()))
	if _, err := c.VerifyLookup(w.tenant, w.bob, resp, at(2).Add(2*maxAge)); err == nil {
		t.Fatal("stale checkpoint accepted")
	}
	sameState(t, c, before)
	if c.SignatureCacheLen() != 0 {
		t.Fatal("signatures of a rejected response were cached")
	}
	// The same response, in time, is accepted and cached.
	must(c.VerifyLookup(w.tenant, w.bob, resp, at(2).Add(time.Minute)))
	if c.SignatureCacheLen() != 1 { // the last entry's (the chain and it vouch for the rest)
		t.Fatal("signatures of an accepted response not cached")
	}
}

// TestClientStateSignatureCacheParsing: the verified_signatures field is
// parsed strictly, and a state of any format but 4 is refused.
func TestClientStateSignatureCacheParsing(t *testing.T) {
	w := newWorld(t, 75)
	c := w.client(t)
	must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(2)))
	st := state(t, c)
	n := c.SignatureCacheLen() * 32
	if st[1] != 4 || n == 0 || st[len(st)-n-1] != byte(n) {
		t.Fatal("unexpected state layout")
	}
	body := st[:len(st)-n-3]
	withSigs := func(keys []byte) []byte {
		out := append(bytes.Clone(body), byte(len(keys)>>16), byte(len(keys)>>8), byte(len(keys)))
		return append(out, keys...)
	}
	keys := st[len(st)-n:]
	if c2 := must(kt.RestoreClient(w.d.Config(maxAge), withSigs(keys))); c2.SignatureCacheLen() != c.SignatureCacheLen() {
		t.Fatal("the re-assembled state lost keys")
	}
	for name, bad := range map[string][]byte{
		"format 1":               append([]byte{st[0], 1}, st[2:]...),
		"format 1 without field": append([]byte{st[0], 1}, body[2:]...),
		"format 2":               append([]byte{st[0], 2}, st[2:]...),
		"format 3":               append([]byte{st[0], 3}, st[2:]...),
		"format 5":               append([]byte{st[0], 5}, st[2:]...),
		"partial key":            withSigs(keys[:n-1]),
		"duplicate key":          withSigs(append(bytes.Clone(keys), keys[:32]...)),
		"more than 4,096 keys":   withSigs(make([]byte, 32*4097)),
		"missing field":          bytes.Clone(body),
		"trailing byte":          append(bytes.Clone(st), 0),
	} {
		if _, err := kt.RestoreClient(w.d.Config(maxAge), bad); !errors.Is(err, kt.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// TestSignatureCacheStagedNotCommittedByLaterCall: signatures staged by a
// rejected lookup are not committed by a later accepted call of another
// kind (a monitoring response): every call starts by discarding what an
// earlier one staged, so the state is that of a client that only
// monitored.
func TestSignatureCacheStagedNotCommittedByLaterCall(t *testing.T) {
	w := newWorld(t, 76)
	clients := []*kt.Client{w.client(t), w.client(t)}
	for i, c := range clients {
		must(c.UpdateCheckpoint(must(w.d.Consistency(0)), at(2)))
		if i == 0 {
			resp := must(w.d.Lookup(w.bob, c.TreeSize()))
			if _, err := c.VerifyLookup(w.tenant, w.bob, resp, at(2).Add(2*maxAge)); err == nil {
				t.Fatal("stale checkpoint accepted")
			}
		}
		mon := must(w.d.Monitor(w.alice, w.a1.ID, 0, 0, c.TreeSize()))
		if _, err := c.Monitor(w.alice, kt.Expected{Self: w.a1.ID}, mon, at(2).Add(time.Minute)); err != nil {
			t.Fatalf("monitoring response refused: %v", err)
		}
	}
	if n, want := clients[0].SignatureCacheLen(), clients[1].SignatureCacheLen(); n != want {
		t.Fatalf("%d signatures cached, want %d: the rejected lookup's were committed", n, want)
	}
	if !bytes.Equal(state(t, clients[0]), state(t, clients[1])) {
		t.Fatal("the rejected lookup changed the state of the later call")
	}
}
