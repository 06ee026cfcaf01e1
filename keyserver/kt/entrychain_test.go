package kt_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// chainValue returns a user value of user with no certificates and the
// given entries, linking each entry's Prev to the one before (relink) and
// re-signing those listed in resign.
func chainValue(t *testing.T, w *world, user org.UserID, entries []*org.Entry, relink bool, resign map[int]bool) []byte {
	t.Helper()
	for i, e := range entries {
		if relink && i > 0 {
			e.Prev = must(entries[i-1].Hash())
		}
		if resign[i] {
			signEntry(t, w.d, e)
		}
	}
	last := entries[len(entries)-1]
	v := &org.UserValue{Tenant: w.tenant, User: user, Entries: entries, Head: org.TimelineHead{Seq: last.Seq, Hash: must(last.Hash())}}
	enc, err := v.Marshal()
	if err != nil { // a broken chain does not marshal: encode by hand
		return nil
	}
	return enc
}

// TestLookupEntryChain: a lookup verifies only the last timeline entry's
// CA signature (docs/spec/directory.md §Client verification, step 8); the
// hash chain carries it to the others. An entry altered anywhere breaks
// either the chain or the last signature, and the lookup is refused. The
// owner's history and monitoring still verify every entry: a chain the CA
// signed over an entry with a bad signature passes a lookup (the CA
// vouched for it by signing the entry after it) but not the history.
func TestLookupEntryChain(t *testing.T) {
	user := uid(9)
	entries := func(w *world) []*org.Entry {
		var es []*org.Entry
		for i := range 3 {
			e := &org.Entry{Tenant: w.tenant, User: user, Seq: uint64(i + 1), Time: at(1), Actors: []org.Actor{{Kind: org.ActorAdmin, ID: [16]byte{1}}}}
			if i == 0 {
				e.Action = &org.UserAdded{}
			} else {
				e.Action = &org.PolicyChanged{}
			}
			es = append(es, e)
		}
		return es
	}
	all := map[int]bool{0: true, 1: true, 2: true}
	for _, tc := range []struct {
		name string
		// value returns the value to publish from honest, signed entries.
		value   func(t *testing.T, w *world, es []*org.Entry) []byte
		lookup  error // nil: accepted
		history error
	}{
		{"honest", func(t *testing.T, w *world, es []*org.Entry) []byte {
			return chainValue(t, w, user, es, true, nil)
		}, nil, nil},
		{"middle signature flipped, chain relinked, last not re-signed", func(t *testing.T, w *world, es []*org.Entry) []byte {
			es[1].Signature[10] ^= 1
			return chainValue(t, w, user, es, true, nil)
		}, org.ErrBadSignature, org.ErrBadSignature},
		{"last signature flipped (ML-DSA half)", func(t *testing.T, w *world, es []*org.Entry) []byte {
			es[2].Signature[64+100] ^= 1
			return chainValue(t, w, user, es, true, nil)
		}, org.ErrBadSignature, org.ErrBadSignature},
		{"middle entry altered, chain relinked, last not re-signed", func(t *testing.T, w *world, es []*org.Entry) []byte {
			es[1].Action = &org.UserRemoved{}
			return chainValue(t, w, user, es, true, nil)
		}, org.ErrBadSignature, org.ErrBadSignature},
		{"middle signature flipped, the CA signs the next entry over it", func(t *testing.T, w *world, es []*org.Entry) []byte {
			es[1].Signature[10] ^= 1
			return chainValue(t, w, user, es, true, map[int]bool{2: true})
		}, nil, org.ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, 77)
			es := entries(w)
			chainValue(t, w, user, es, true, all) // sign the honest chain
			value := tc.value(t, w, es)
			if value == nil {
				t.Fatal("value does not encode")
			}
			w.d.Inject(org.Label{User: user}, value)
			must(w.d.PublishEpoch(at(2)))

			c := w.client(t)
			must(c.UpdateCheckpoint(must(w.d.Consistency(0)), at(3)))
			before := state(t, c)
			_, err := c.VerifyLookup(w.tenant, user, must(w.d.Lookup(user, c.TreeSize())), at(3))
			checkValueErr(t, "lookup", err, tc.lookup)
			if tc.lookup != nil {
				sameState(t, c, before)
			}

			h := w.client(t)
			must(h.UpdateCheckpoint(must(w.d.Consistency(0)), at(3)))
			_, err = h.VerifyHistory(w.tenant, user, kt.Position{}, must(w.d.History(user, 0, h.TreeSize())), at(3))
			checkValueErr(t, "history", err, tc.history)
		})
	}
	// An entry altered without relinking the chain: the value does not
	// even parse.
	t.Run("middle signature flipped, chain not relinked", func(t *testing.T) {
		w := newWorld(t, 77)
		es := entries(w)
		chainValue(t, w, user, es, true, all)
		good := chainValue(t, w, user, es, false, nil)
		sig := es[1].Signature
		i := bytes.Index(good, sig)
		if i < 0 {
			t.Fatal("signature not found in the value")
		}
		bad := bytes.Clone(good)
		bad[i+10] ^= 1
		w.d.Inject(org.Label{User: user}, bad)
		must(w.d.PublishEpoch(at(2)))
		c := w.client(t)
		must(c.UpdateCheckpoint(must(w.d.Consistency(0)), at(3)))
		before := state(t, c)
		_, err := c.VerifyLookup(w.tenant, user, must(w.d.Lookup(user, c.TreeSize())), at(3))
		checkValueErr(t, "lookup", err, org.ErrMalformed)
		sameState(t, c, before)
	})
}

func checkValueErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("%s refused: %v", what, err)
		}
		return
	}
	var ke *kt.KTProofError
	if !errors.As(err, &ke) || ke.Step != kt.StepValue || !errors.Is(err, want) {
		t.Fatalf("%s: %v, want a value error matching %v", what, err, want)
	}
}

// TestLookupCertificateVouchedByEntry: in a lookup, a certificate
// byte-identical to the one a device_added entry of the value carries is
// authenticated by the CA's signature on that entry (through the chain
// and the last entry's signature), so its own signature is not checked;
// its issuer, validity and revocation are. Any difference from the
// entry's certificate, a signature bit included, makes it a certificate
// of its own, whose signature is checked. History and monitoring check
// every certificate's signature.
func TestLookupCertificateVouchedByEntry(t *testing.T) {
	user := uid(9)
	// cert returns a certificate of user (alice's, moved to user) signed
	// by the CA, then changed by mut.
	cert := func(w *world, mut func(c *org.DeviceCertificate)) *org.DeviceCertificate {
		c := *w.a1.Certificate
		c.User = user
		resignCert(t, w.d, &c)
		c.Signature = bytes.Clone(c.Signature)
		if mut != nil {
			mut(&c)
		}
		return &c
	}
	flipSig := func(c *org.DeviceCertificate) { c.Signature[70] ^= 1 }
	value := func(w *world, inEntry, inValue *org.DeviceCertificate) []byte {
		actor := []org.Actor{{Kind: org.ActorAdmin, ID: [16]byte{1}}}
		es := []*org.Entry{
			{Tenant: w.tenant, User: user, Seq: 1, Time: at(1), Actors: actor, Action: &org.UserAdded{}},
			{Tenant: w.tenant, User: user, Seq: 2, Time: at(1), Actors: actor, Action: &org.DeviceAdded{Code: org.CodeID{9}, Certificate: inEntry}},
		}
		for i, e := range es {
			if i > 0 {
				e.Prev = must(es[i-1].Hash())
			}
			signEntry(t, w.d, e)
		}
		v := &org.UserValue{Tenant: w.tenant, User: user, Certificates: []*org.DeviceCertificate{inValue}, Entries: es,
			Head: org.TimelineHead{Seq: 2, Hash: must(es[1].Hash())}}
		return must(v.Marshal())
	}
	for _, tc := range []struct {
		name            string
		inEntry         func(w *world) *org.DeviceCertificate
		inValue         func(w *world, inEntry *org.DeviceCertificate) *org.DeviceCertificate
		lookup, history error
	}{
		{"honest", func(w *world) *org.DeviceCertificate { return cert(w, nil) },
			func(_ *world, e *org.DeviceCertificate) *org.DeviceCertificate { return e }, nil, nil},
		{"value's certificate signature flipped", func(w *world) *org.DeviceCertificate { return cert(w, nil) },
			func(w *world, _ *org.DeviceCertificate) *org.DeviceCertificate { return cert(w, flipSig) },
			org.ErrBadSignature, org.ErrBadSignature},
		{"the CA signed an entry carrying a certificate with a bad signature", func(w *world) *org.DeviceCertificate { return cert(w, flipSig) },
			func(_ *world, e *org.DeviceCertificate) *org.DeviceCertificate { return e }, nil, org.ErrBadSignature},
		{"the CA signed an entry carrying a certificate of another issuer", func(w *world) *org.DeviceCertificate {
			return cert(w, func(c *org.DeviceCertificate) { c.Issuer[0] ^= 1; resignCert(t, w.d, c) })
		}, func(_ *world, e *org.DeviceCertificate) *org.DeviceCertificate { return e }, org.ErrUnknownIssuer, org.ErrUnknownIssuer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, 78)
			inEntry := tc.inEntry(w)
			w.d.Inject(org.Label{User: user}, value(w, inEntry, tc.inValue(w, inEntry)))
			must(w.d.PublishEpoch(at(2)))

			c := w.client(t)
			must(c.UpdateCheckpoint(must(w.d.Consistency(0)), at(3)))
			before := state(t, c)
			res, err := c.VerifyLookup(w.tenant, user, must(w.d.Lookup(user, c.TreeSize())), at(3))
			checkValueErr(t, "lookup", err, tc.lookup)
			if tc.lookup != nil {
				sameState(t, c, before)
			} else if len(res.Devices) != 1 {
				t.Fatalf("%d usable devices, want 1", len(res.Devices))
			}

			h := w.client(t)
			must(h.UpdateCheckpoint(must(w.d.Consistency(0)), at(3)))
			_, err = h.VerifyHistory(w.tenant, user, kt.Position{}, must(w.d.History(user, 0, h.TreeSize())), at(3))
			checkValueErr(t, "history", err, tc.history)
		})
	}
}
