package kt_test

import (
	"bytes"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// TestLookupCertificatesNamedByEntry: a device_added entry names the
// user's other certificates by hash (docs/spec/org.md §Timeline entries),
// so a cold lookup of a user whose three devices were added in three
// epochs verifies one CA signature, the last entry's: the two earlier
// certificates are vouched for by it (docs/spec/directory.md §Client
// verification, step 8) and do not join the signature cache. A
// certificate whose bytes differ from the one named (here its signature
// altered) keeps its own check and fails the lookup, the state unchanged;
// the owner's history still verifies every signature.
func TestLookupCertificatesNamedByEntry(t *testing.T) {
	w := newWorld(t, 96)
	dave := uid(4)
	ok(t, w.d.AddUser(dave, "Dave", at(1)))
	d1 := must(w.d.Enrol(dave, nil, at(1)))
	must(w.d.PublishEpoch(at(2)))
	d2 := must(w.d.Enrol(dave, d1, at(2)))
	must(w.d.PublishEpoch(at(2)))
	must(w.d.Enrol(dave, d1, at(2)))
	must(w.d.PublishEpoch(at(2)))

	c := w.client(t)
	res := must(c.VerifyLookup(w.tenant, dave, must(w.d.Lookup(dave, 0)), at(3)))
	if len(res.Devices) != 3 || len(res.Value.Entries) != 1 {
		t.Fatalf("%d devices, %d entries; want 3 devices and the last entry only", len(res.Devices), len(res.Value.Entries))
	}
	if n := c.SignatureCacheLen(); n != 1 || !c.EntryCached(res.Value.Entries[0]) {
		t.Fatalf("%d signatures verified, want the last entry's only", n)
	}
	if c.CertificateCached(d1.Certificate) || c.CertificateCached(d2.Certificate) {
		t.Fatal("a certificate vouched for by the entry joined the signature cache")
	}
	h := w.client(t)
	must(h.VerifyHistory(w.tenant, dave, kt.Position{}, must(w.d.History(dave, 0, 0)), at(3)))
	if !h.CertificateCached(d1.Certificate) || !h.CertificateCached(d2.Certificate) {
		t.Fatal("history did not verify every certificate")
	}

	// d1's certificate with its signature altered: not the bytes the entry
	// names.
	v := must(w.d.Tenant.UserValue(dave))
	for i, cert := range v.Certificates {
		if cert.Device == d1.ID {
			bad := *cert
			bad.Signature = bytes.Clone(cert.Signature)
			bad.Signature[70] ^= 1
			v.Certificates[i] = &bad
		}
	}
	v.Entries = res.Value.Entries
	w.d.Inject(org.Label{User: dave}, must(v.Marshal()))
	must(w.d.PublishEpoch(at(3)))
	c2 := w.client(t)
	before := state(t, c2)
	_, err := c2.VerifyLookup(w.tenant, dave, must(w.d.Lookup(dave, 0)), at(4))
	checkValueErr(t, "lookup", err, org.ErrBadSignature)
	sameState(t, c2, before)
}
