package kt_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// TestForgedLastEntryUnderOldHead: a client that verified alice's value
// holds the CA signature of its last entry, cached under the value's head
// hash. The directory then publishes a value whose last entry adds a
// rogue device (its certificate carries a copied signature) but whose
// head still names the old last entry. The lookup is refused as a bad
// value and the client's state is unchanged (org §Security timeline: the
// head is the last entry's hash).
func TestForgedLastEntryUnderOldHead(t *testing.T) {
	w := newWorld(t, 992)
	must(w.d.Enrol(w.alice, w.a1, at(2)))
	must(w.d.PublishEpoch(at(3)))
	c := w.client(t)
	r0 := must(w.d.Lookup(w.alice, 0))
	must(c.VerifyLookup(w.tenant, w.alice, r0, at(4)))

	v := must(org.ParseUserValue(r0.Record.Value))
	oldHead := v.Head
	last := v.Entries[len(v.Entries)-1]
	da, isAdd := last.Action.(*org.DeviceAdded)
	if !isAdd {
		t.Fatalf("last entry %T", last.Action)
	}
	dev := must(w.d.NewDeviceKeys(w.alice))
	rogue := *da.Certificate
	rogue.Device = org.DeviceID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}
	rogue.Serial = 9999
	rogue.Identity, rogue.MLSKey = dev.Identity.Public(), dev.MLS
	rogue.Signature = bytes.Clone(da.Certificate.Signature)
	forged := *last
	forged.Action = &org.DeviceAdded{Code: da.Code, Certificate: &rogue}
	v.Entries[len(v.Entries)-1] = &forged
	v.Certificates = append(v.Certificates, &rogue) // rogue.Device sorts last
	// Encode with the forged entry's own head (Marshal refuses a stale
	// one), then write the old head hash back over it.
	v.Head.Hash = must(forged.Hash())
	enc := must(v.Marshal())
	copy(enc[len(enc)-32:], oldHead.Hash[:])
	if _, err := org.ParseUserValue(enc); !errors.Is(err, org.ErrMalformed) {
		t.Fatalf("forged value parses: %v", err)
	}

	w.d.Inject(org.Label{User: w.alice}, enc)
	must(w.d.PublishEpoch(at(5)))
	before := state(t, c)
	res, err := c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, c.TreeSize())), at(6))
	if err == nil {
		t.Fatalf("forged value accepted; rogue device usable: %v", res.Device(rogue.Device) != nil)
	}
	var ke *kt.KTProofError
	if !errors.As(err, &ke) || ke.Step != kt.StepValue {
		t.Fatalf("got %v, want a value proof error", err)
	}
	sameState(t, c, before)
}
