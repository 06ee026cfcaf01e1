package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"time"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/store"
)

// Lodged approvals (docs/spec/directory.md §Lodged approvals): an admin
// approval that the directory holds until the roster's threshold is met,
// and a key rotation under approval, are acknowledged only once durable
// as the store's lodged records (store.LodgedStore), and restored at a
// restart. Each is one record, written whole (the approvals so far) under
// a key of its kind and a 32-byte id, expiring when the held approvals
// do; once the operation it waits for is applied and that is durable,
// the record is deleted.

// Lodged record kinds, the first byte of a store.LodgedKey.
const (
	// lodgedDevice: admin approvals of an enrolment request (a
	// lost-device recovery), id SHA-256 of the request's encoding,
	// subject the user.
	lodgedDevice = 0x01
	// lodgedStatement: admin approvals of a proposed trust bundle
	// (witness set) or admin roster, id SHA-256 of the approval message.
	lodgedStatement = 0x02
	// lodgedRotateCA, lodgedRotateLog: a key rotation under approval, id
	// SHA-256 of its proposal (MarshalProposal), with the approvals so
	// far.
	lodgedRotateCA  = 0x03
	lodgedRotateLog = 0x04
)

func lodgedKey(kind byte, id [32]byte) store.LodgedKey {
	var k store.LodgedKey
	k[0] = kind
	copy(k[1:], id[:])
	return k
}

// lodge makes l durable under key until expires before the operation
// that changed it is answered. t.mu is held. A failure is errJournal (503):
// the caller leaves its in-memory state as it was.
func (t *Tenant) lodge(key store.LodgedKey, l *lodgedApprovals, expires, now time.Time) error {
	enc, err := l.marshal()
	if err == nil {
		err = t.st.PutLodged(context.Background(), t.id, key, enc, expires, now)
	}
	if err != nil {
		t.log.Error("lodged approval not made durable", slog.Any("err", err))
		return fmt.Errorf("%w: lodging: %v", errJournal, err)
	}
	return nil
}

// unlodge schedules the deletion of the lodged record key, which the
// operation running under t.mu used up: the caller deletes it
// (dropLodged) once the operation's own changes are durable, so that a
// crash before then keeps the approvals.
func (t *Tenant) unlodge(key store.LodgedKey) {
	t.unlodged = append(t.unlodged, key)
}

// takeUnlodged returns the deletions scheduled by the operation that ran
// under t.mu, which is held.
func (t *Tenant) takeUnlodged() []store.LodgedKey {
	ks := t.unlodged
	t.unlodged = nil
	return ks
}

// dropLodged deletes used-up lodged records, best effort: a record left
// behind holds approvals of something applied, which a restart drops or
// which expire.
func (t *Tenant) dropLodged(keys []store.LodgedKey) {
	for _, k := range keys {
		if err := t.st.PutLodged(context.Background(), t.id, k, nil, time.Time{}, t.now()); err != nil {
			t.log.Warn("deleting a used lodged approval", slog.Any("err", err))
		}
	}
}

// loadLodged restores the lodged approvals and rotations under approval
// of a tenant restored from the store, after its pending records: those
// not expired and still applicable (a rotation proposing the next trust
// bundle, with its new key held). t.mu is not shared yet.
func (t *Tenant) loadLodged(ctx context.Context) error {
	now := t.now()
	next := t.org.TrustBundle().Sequence + 1
	var stale []store.LodgedKey
	err := t.st.LodgedRecords(ctx, t.id, now, func(k store.LodgedKey, v []byte, exp time.Time) error {
		l, err := parseLodgedApprovals(v)
		if err != nil {
			return fmt.Errorf("%w: lodged record %x: %v", store.ErrCorrupt, k[:1], err)
		}
		id := [32]byte(k[1:])
		switch k[0] {
		case lodgedDevice, lodgedStatement:
			if len(l.approvals) == 0 || len(l.proposal) > 0 {
				return fmt.Errorf("%w: lodged approvals of kind %d", store.ErrCorrupt, k[0])
			}
			held := t.approvals
			if k[0] == lodgedStatement {
				held = t.bundleApprovals
			}
			held[id] = &pendingApprovals{user: org.UserID(l.subject), approvals: l.approvals, expires: exp}
		case lodgedRotateCA, lodgedRotateLog:
			kp, err := t.restoreProposal(k[0], l, exp)
			if err != nil {
				return err
			}
			if kp == nil || kp.bundle.Sequence != next {
				stale = append(stale, k)
				return nil
			}
			slot := &t.caProposal
			if k[0] == lodgedRotateLog {
				slot = &t.logProposal
			}
			if *slot != nil && !exp.After((*slot).expires) {
				stale = append(stale, k)
				return nil
			}
			if *slot != nil {
				stale = append(stale, lodgedKey(k[0], sha256.Sum256((*slot).enc)))
			}
			*slot = kp
		default:
			return fmt.Errorf("%w: lodged record of unknown kind %d", store.ErrCorrupt, k[0])
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n := len(t.approvals) + len(t.bundleApprovals); n > 0 || t.caProposal != nil || t.logProposal != nil {
		t.log.Info("lodged approvals restored", slog.Int("approvals", n),
			slog.Bool("ca_rotation", t.caProposal != nil), slog.Bool("log_rotation", t.logProposal != nil))
	}
	t.dropLodged(stale)
	return nil
}

// restoreProposal rebuilds a lodged key rotation, or returns nil if its
// new key is no longer held.
func (t *Tenant) restoreProposal(kind byte, l *lodgedApprovals, exp time.Time) (*keyProposal, error) {
	b, err := org.ParseTrustBundle(l.proposal)
	if err != nil || b.Tenant != t.id || l.subject != ([16]byte{}) {
		return nil, fmt.Errorf("%w: lodged key rotation: bad proposal", store.ErrCorrupt)
	}
	b.Signature = nil
	enc, err := MarshalProposal(b)
	if err != nil || !bytes.Equal(enc, l.proposal) {
		return nil, fmt.Errorf("%w: lodged key rotation: proposal not in its encoding", store.ErrCorrupt)
	}
	kp := &keyProposal{bundle: b, enc: enc, approvals: l.approvals, expires: exp}
	if kind == lodgedRotateCA {
		for _, s := range t.cas {
			if s.Public().Equal(b.CA) {
				kp.ca = s
			}
		}
		if kp.ca == nil {
			t.log.Warn("lodged CA rotation dropped: its new key is not held")
			return nil, nil
		}
		kp.key, kp.fp = b.CA.String(), fingerprint(b.CA.Bytes())
	} else {
		if kp.log = t.logKey(b.Log); kp.log == nil {
			t.log.Warn("lodged log key rotation dropped: its new key is not held")
			return nil, nil
		}
		kp.key, kp.fp = b.Log.String(), fingerprint(b.Log.Bytes())
	}
	return kp, nil
}
