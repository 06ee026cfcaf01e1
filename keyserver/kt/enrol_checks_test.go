package kt_test

import (
	"errors"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/kt/kttest"
	"github.com/moat-im/moat/keyserver/org"
)

// TestEnrolRefusesBundleNotInCode: a new device pins only the trust bundle
// whose fingerprint its enrolment code carries (docs/spec/org.md §Trust
// bootstrap). An impostor directory for the same tenant id, with its own
// CA, log and witnesses, answers the device's enrolment with its bundle, a
// certificate of the device's own keys and its cosigned checkpoint: an
// answer that is consistent under the impostor's bundle (it enrols a
// device that holds the impostor's code) and refused for the device's
// code, and nothing is pinned.
func TestEnrolRefusesBundleNotInCode(t *testing.T) {
	w := newEnrolWorld(t)
	evil := must(kttest.New(kttest.Options{Tenant: w.d.Tenant.ID(), Seed: 146, Now: w.real.Add(-day)}))
	ok(t, evil.AddUser(w.alice, "Alice", w.real.Add(-day)))
	must(evil.PublishEpoch(w.real.Add(-day)))
	dev := &kttest.Device{User: w.alice, Identity: w.dev.Identity, MLS: w.dev.MLS}
	evilCode, evilReq := must2(evil.Request(dev, w.codeIssued))
	ok(t, evil.Redeem(dev, evilCode, evilReq, nil, w.certIssue))
	must(evil.PublishEpoch(w.real))
	if dev.ID != w.dev.ID {
		t.Fatal("the impostor's certificate is for another device id")
	}
	answer := &kt.Enrolment{
		TrustBundle: must(evil.TrustBundle().Marshal()), Certificate: must(dev.Certificate.Marshal()), Consistency: noteOnly(evil.Note()),
	}

	c, cert, err := kt.Enrol(w.code, w.req, answer, maxAge, 0, w.real)
	if !errors.Is(err, org.ErrFingerprintMismatch) || c != nil || cert != nil {
		t.Fatalf("impostor's answer: got %v", err)
	}
	// Without its checkpoint, and with the genuine certificate: the bundle
	// alone is refused.
	for _, a := range []*kt.Enrolment{withCheckpoint(answer, nil), {TrustBundle: answer.TrustBundle, Certificate: w.answer.Certificate}} {
		if _, _, err := kt.Enrol(w.code, w.req, a, maxAge, 0, w.real); !errors.Is(err, org.ErrFingerprintMismatch) {
			t.Fatalf("impostor's bundle: got %v", err)
		}
	}
	// A bundle the tenant's own CA signed, but not the one in the code
	// (here: the same bundle with another witness quorum): refused too.
	other := must(org.ParseTrustBundle(w.bundle))
	other.Witnesses.Quorum = len(other.Witnesses.Witnesses) // 3 of 3, not 2 of 3
	enc := caSign(t, w.d, "moat/v1/org/trust-bundle", must(other.Marshal()))
	if _, err := org.ParseTrustBundle(enc); err != nil {
		t.Fatal(err)
	}
	if _, _, err := kt.Enrol(w.code, w.req, &kt.Enrolment{TrustBundle: enc, Certificate: w.answer.Certificate, Consistency: noteOnly(w.freshNote)}, maxAge, 0, w.real); !errors.Is(err, org.ErrFingerprintMismatch) {
		t.Fatalf("re-signed bundle with another quorum: got %v", err)
	}

	// The contrast: the same answer enrols the device that holds the
	// impostor's code, and the genuine answer enrols this one.
	evilCode = must(org.ParseEnrolmentCodeText(evilCode.Text()))
	if _, _, err := kt.Enrol(evilCode, evilReq, answer, maxAge, 0, w.real); err != nil {
		t.Fatalf("the impostor's answer under its own code: %v", err)
	}
	if _, _, err := kt.Enrol(w.code, w.req, w.answer, maxAge, 0, w.real); err != nil {
		t.Fatalf("the genuine answer: %v", err)
	}
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}
