package kt_test

import (
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
)

// TestSignatureCache: a value verified once fills the signature cache,
// which survives MarshalSignatureCache/RestoreSignatureCache with
// MarshalState/RestoreClient; a tampered signature never hits it.
func TestSignatureCache(t *testing.T) {
	w := newWorld(t, 72)
	resp := must(w.d.Lookup(w.alice, 0))
	c := w.client(t)
	must(c.VerifyLookup(w.tenant, w.alice, resp, at(2)))
	state, sigs := must(c.MarshalState()), must(c.MarshalSignatureCache())
	if len(sigs) <= 52 {
		t.Fatal("signature cache empty after a verified value")
	}
	c2 := must(kt.RestoreClient(w.d.Config(maxAge), state))
	ok(t, c2.RestoreSignatureCache(sigs))
	if got := must(c2.MarshalSignatureCache()); string(got) != string(sigs) {
		t.Fatal("signature cache did not survive restore")
	}
	// Tamper with the last byte of the value (a signature byte of the
	// last object): the record no longer matches, so also recommit.
	bad := *resp
	rec := *resp.Record
	rec.Value = append([]byte(nil), rec.Value...)
	rec.Value[len(rec.Value)-1] ^= 1
	bad.Record = &rec
	c3 := must(kt.RestoreClient(w.d.Config(maxAge), state))
	ok(t, c3.RestoreSignatureCache(sigs))
	if _, err := c3.VerifyLookup(w.tenant, w.alice, &bad, at(2)); err == nil {
		t.Fatal("tampered value accepted")
	}
	if err := c3.RestoreSignatureCache(sigs[:len(sigs)-1]); err == nil {
		t.Fatal("truncated cache accepted")
	}
}
