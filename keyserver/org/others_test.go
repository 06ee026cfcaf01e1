package org

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestEntryOthers: a device_added entry names, by CertificateHash, the
// user's other current certificates when it is signed (docs/spec/org.md
// §Timeline entries): none for the first device, the first device's for
// the second, both earlier ones for the third, none of a revoked device.
// Its encoding round-trips, and the parser rejects a list that is not
// strictly increasing or has a partial hash; the encoder refuses a list
// that is not strictly increasing.
func TestEntryOthers(t *testing.T) {
	f, d1, e1 := dcFixture(t, 47)
	if got := e1.Entry.OtherCertificates(); len(got) != 0 {
		t.Fatalf("first device's entry names %d certificates", len(got))
	}
	enrol := func(at time.Time) *Enrolment {
		c := f.code(t, uid(1), at)
		req := f.request(t, c, f.newDevice(t))
		a := must(ApproveByDevice(d1.id.Signing, e1.Certificate.Device, uid(1), req))
		return must(f.t.RedeemEnrolmentCode(c, req, []*Approval{a}, at))
	}
	h := func(c *DeviceCertificate) [32]byte { return must(CertificateHash(c)) }
	e2 := enrol(t0.Add(time.Minute))
	if got := e2.Entry.OtherCertificates(); !slices.Equal(got, [][32]byte{h(e1.Certificate)}) {
		t.Fatalf("second device's entry names %x", got)
	}
	e3 := enrol(t0.Add(2 * time.Minute))
	want := [][32]byte{h(e1.Certificate), h(e2.Certificate)}
	slices.SortFunc(want, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	if got := e3.Entry.OtherCertificates(); !slices.Equal(got, want) {
		t.Fatalf("third device's entry names %x, want %x", got, want)
	}
	// The certificates a value carries are the entry's and its others.
	v := must(f.t.UserValue(uid(1)))
	for _, c := range v.Certificates {
		if c.Device != e3.Certificate.Device && !slices.Contains(want, h(c)) {
			t.Fatalf("certificate of device %x neither carried nor named", c.Device)
		}
	}
	must(f.t.RevokeDevice(aid(1), uid(1), e2.Certificate.Device, ReasonCompromised, t0.Add(3*time.Minute)))
	e4 := enrol(t0.Add(4 * time.Minute))
	want = [][32]byte{h(e1.Certificate), h(e3.Certificate)}
	slices.SortFunc(want, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	if got := e4.Entry.OtherCertificates(); !slices.Equal(got, want) {
		t.Fatalf("after a revocation, the entry names %x, want %x", got, want)
	}

	enc := must(e4.Entry.Marshal())
	back := must(ParseEntry(enc))
	if !bytes.Equal(must(back.Marshal()), enc) || !slices.Equal(back.OtherCertificates(), want) {
		t.Fatal("entry does not round-trip")
	}
	ok(t, back.Verify(f.t.CA(), f.t.id, uid(1)))

	// Mutations of the others field, at its place in the encoding: it
	// ends the body, before the signature.
	body := must(e4.Entry.body())
	sig := enc[len(body):]
	list := body[len(body)-2-64:]
	if int(list[0])<<8|int(list[1]) != 64 {
		t.Fatal("others is not where the test expects it")
	}
	for name, others := range map[string][]byte{
		"not increasing": append(append([]byte{0, 64}, want[1][:]...), want[0][:]...),
		"duplicate":      append(append([]byte{0, 64}, want[0][:]...), want[0][:]...),
		"partial hash":   append([]byte{0, 63}, want[0][:31]...),
	} {
		mut := append(append(slices.Clone(body[:len(body)-2-64]), others...), sig...)
		if _, err := ParseEntry(mut); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: parsed (%v)", name, err)
		}
	}
	a := *e4.Entry
	a.Action = &DeviceAdded{Code: e4.Entry.Action.(*DeviceAdded).Code, Certificate: e4.Certificate, Others: [][32]byte{want[1], want[0]}}
	if _, err := a.Marshal(); err == nil {
		t.Error("others not increasing encodes")
	}
	// Version 1 (without others) is no longer parsed.
	old := slices.Clone(enc)
	old[1] = 1
	if _, err := ParseEntry(old); !errors.Is(err, ErrMalformed) {
		t.Errorf("version 1 parsed (%v)", err)
	}
}
