package kt

import (
	"fmt"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/org"
)

// Enrolment is the directory's answer to a new device's enrolment
// (docs/spec/directory-api.md §Enrolment), as the device received it.
type Enrolment struct {
	// TrustBundle is the org.TrustBundle encoding.
	TrustBundle []byte
	// Certificate is the org.DeviceCertificate encoding.
	Certificate []byte
	// Consistency is optional: the ConsistencyResponse encoding, from
	// tree size 0, of the directory's latest witness-cosigned checkpoint
	// at redemption with its last entry, which the client then holds
	// (docs/spec/directory.md §Held entry), so that its first lookups
	// against that checkpoint need no inclusion proof.
	Consistency []byte
}

// CheckEnrolmentClock reports whether the local time now is more than
// maxSkew (zero: tlog.DefaultMaxSkew) behind code's issue time, as a
// *tlog.ClockError. A device calls it before it redeems the code, so that
// a wrong clock is caught before the code is spent (docs/spec/org.md §Time
// floor at enrolment). A version 1 code has no issue time and passes.
func CheckEnrolmentClock(code *org.EnrolmentCode, maxSkew time.Duration, now time.Time) error {
	if code == nil || code.IssuedAt.IsZero() {
		return nil
	}
	return checkClock(code.IssuedAt, maxSkew, now)
}

func checkClock(floor time.Time, maxSkew time.Duration, now time.Time) error {
	if maxSkew == 0 {
		maxSkew = tlog.DefaultMaxSkew
	}
	if now.Add(maxSkew).Before(floor) {
		return fmt.Errorf("kt: enrolment: %w", &tlog.ClockError{Now: now, Floor: floor})
	}
	return nil
}

// Enrol is a new device's trust bootstrap from its enrolment
// (docs/spec/org.md §Trust bootstrap and §Time floor at enrolment). code
// is the device's enrolment code, req the request it sent, resp the
// directory's answer, now the local time. In order:
//
//  1. org.VerifyEnrolment: the trust bundle matches the code's
//     fingerprint, and the certificate is the bundle CA's, for exactly the
//     device's own keys, and not issued before the code;
//  2. the time floor F is the latest of the code's issue time, the
//     certificate's not_before and the bundle's issue time; a clock more
//     than maxSkew behind F is a *tlog.ClockError (errors.Is
//     tlog.ErrClockBehind);
//  3. a client is configured from the bundle with F as its floor;
//  4. if resp carries a consistency response, it is parsed strictly
//     (ParseConsistencyResponse, before step 1) and must be from tree
//     size 0 with a note and no consistency proof; the client accepts
//     its checkpoint as its first, under the tlog rules and F: a
//     checkpoint witnessed before F - maxAge is refused (tlog.ErrStale),
//     as is anything else the rules refuse; and the checkpoint's last
//     entry, if the response carries it, is checked against it and held
//     (UpdateCheckpoint).
//
// Any failure refuses the answer as a whole; nothing is pinned. Enrol is a
// function of its arguments, so a device refused for its clock keeps resp
// and its keys and calls Enrol again once the clock is right. On success
// the device persists the client's MarshalState (which holds F) with the
// bundle, and monitors its own user from the returned certificate.
func Enrol(code *org.EnrolmentCode, req *org.EnrolmentRequest, resp *Enrolment, maxAge, maxSkew time.Duration, now time.Time) (*Client, *org.DeviceCertificate, error) {
	if resp == nil {
		return nil, nil, fmt.Errorf("kt: enrolment: no answer: %w", org.ErrInvalidArgument)
	}
	// The consistency response is parsed before anything is verified.
	var cu *ConsistencyResponse
	if len(resp.Consistency) > 0 {
		var err error
		if cu, err = ParseConsistencyResponse(resp.Consistency); err != nil {
			return nil, nil, fmt.Errorf("kt: enrolment: %w", err)
		}
		if cu.Checkpoint.BaseSize != 0 || len(cu.Checkpoint.Note) == 0 || len(cu.Checkpoint.Consistency) != 0 {
			return nil, nil, fmt.Errorf("kt: enrolment: %w: consistency response not from size 0 with a checkpoint", ErrMalformed)
		}
	}
	tb, cert, err := org.VerifyEnrolment(code, req, resp.TrustBundle, resp.Certificate)
	if err != nil {
		return nil, nil, fmt.Errorf("kt: %w", err)
	}
	floor := cert.NotBefore
	for _, t := range []time.Time{code.IssuedAt, tb.IssuedAt} {
		if t.After(floor) {
			floor = t
		}
	}
	if err := checkClock(floor, maxSkew, now); err != nil {
		return nil, nil, err
	}
	c, err := NewClient(Config{Bundle: tb, MaxAge: maxAge, MaxSkew: maxSkew, NotBefore: floor})
	if err != nil {
		return nil, nil, err
	}
	if cu != nil {
		if _, err := c.UpdateCheckpoint(cu, now); err != nil {
			return nil, nil, fmt.Errorf("kt: enrolment: %w", err)
		}
	}
	return c, cert, nil
}
