package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/vmap"
)

// Transitions (docs/spec/directory-api.md §Transitions): the checkpoint of
// every epoch that published a new trust bundle is kept for good in the
// store (store.EpochCommit.Transition), cosigned, so that a client that
// was offline across the change follows it later (kt.Client.
// FollowTransitions), and a witness that missed a log key announcement is
// brought up to date (cosign.go).

// transition is an epoch that published a new trust bundle: the size of
// its checkpoint and the checkpoint as kept, log-signed until a witness
// quorum cosigned it (cosigned), then with the cosignatures.
type transition struct {
	size     uint64
	note     []byte
	cosigned bool
}

// errTransitionUncosigned is returned by publishing while the head's epoch
// published a new trust bundle that no witness quorum has cosigned: its
// cosigned checkpoint is what clients offline across the change need, and
// witnesses never cosign a checkpoint older than one they cosigned, so the
// next epoch waits for it.
var errTransitionUncosigned = errors.New("service: the epoch that published a new trust bundle is not cosigned yet; the next epoch waits for it")

// loadTransitions reads the kept transitions. A transition at the head
// counts as cosigned if the head's checkpoint is served.
func (t *Tenant) loadTransitions(ctx context.Context) error {
	kept, err := t.st.Transitions(ctx)
	if err != nil {
		return err
	}
	trs := make([]transition, 0, len(kept))
	for _, k := range kept {
		size, err := noteSize(k.Checkpoint)
		if err != nil || size != k.Epoch+1 || (len(trs) > 0 && size <= trs[len(trs)-1].size) {
			return fmt.Errorf("%w: transition of epoch %d", store.ErrCorrupt, k.Epoch)
		}
		trs = append(trs, transition{size: size, note: k.Checkpoint, cosigned: true})
	}
	t.transitions.Store(&trs)
	return nil
}

// checkHeadTransition marks a transition at the head uncosigned unless
// the head's checkpoint is served (after a restart).
func (t *Tenant) checkHeadTransition() {
	trs := t.loadedTransitions()
	h, sv := t.head.Load(), t.served.Load()
	if n := len(trs); n > 0 && h != nil && trs[n-1].size == h.LogSize && (sv == nil || sv.size != h.LogSize) {
		trs[n-1].cosigned = false
		t.transitions.Store(&trs)
	}
}

// loadedTransitions returns a copy of the transitions.
func (t *Tenant) loadedTransitions() []transition {
	if p := t.transitions.Load(); p != nil {
		return append([]transition(nil), (*p)...)
	}
	return nil
}

// addTransition records, after its commit, the epoch of size that
// published a new bundle, with its log-signed checkpoint.
func (t *Tenant) addTransition(size uint64, signed []byte) {
	trs := append(t.loadedTransitions(), transition{size: size, note: bytes.Clone(signed)})
	t.transitions.Store(&trs)
}

// transitionCosigned records that the store keeps note, cosigned, as the
// checkpoint of size, if that is a transition.
func (t *Tenant) transitionCosigned(size uint64, note []byte) {
	trs := t.loadedTransitions()
	if n := len(trs); n > 0 && trs[n-1].size == size {
		trs[n-1].note, trs[n-1].cosigned = bytes.Clone(note), true
		t.transitions.Store(&trs)
	}
}

// transitionPending reports whether the head's epoch published a new
// trust bundle that is not cosigned yet.
func (t *Tenant) transitionPending() bool {
	trs := t.loadedTransitions()
	h := t.head.Load()
	n := len(trs)
	return n > 0 && h != nil && trs[n-1].size == h.LogSize && !trs[n-1].cosigned
}

// Transitions answers a request for the transitions after the trust
// bundle of sequence after, by a client that trusts a tree of size
// clientSize (docs/spec/directory.md §Following transitions): each served
// transition whose bundle has a higher sequence, with its kept checkpoint
// (the served one, fresher, if it is the served checkpoint's), the
// consistency proof from the tree the client trusts at that point, and
// the proofs of the trust-bundle and ca-rotation labels at its epoch; then
// the served checkpoint and the trust-bundle label's proof at it.
func (t *Tenant) Transitions(ctx context.Context, after, clientSize uint64) (*kt.TransitionsResponse, error) {
	sv, err := t.servedState()
	if err != nil {
		return nil, err
	}
	if clientSize > sv.size {
		return nil, &errAhead{sv.size}
	}
	bAlpha, err := kt.OrgAlpha(t.id, org.OrgLabelTrustBundle)
	if err != nil {
		return nil, err
	}
	rAlpha, err := kt.OrgAlpha(t.id, org.OrgLabelCARotation)
	if err != nil {
		return nil, err
	}
	bLabel, _ := t.label(bAlpha)
	rLabel, _ := t.label(rAlpha)
	tree := t.tree.Load()
	resp := &kt.TransitionsResponse{BaseSize: clientSize, After: after}
	walk := clientSize
	for _, tr := range t.loadedTransitions() {
		if tr.size > sv.size {
			break // not served yet
		}
		epoch := tr.size - 1
		rec, err := t.recordAt(ctx, bLabel, epoch)
		if err != nil {
			return nil, err
		}
		b, err := org.ParseTrustBundle(rec.Value)
		if err != nil {
			return nil, fmt.Errorf("service: %w: trust bundle of epoch %d: %v", store.ErrCorrupt, epoch, err)
		}
		if b.Sequence <= after {
			continue
		}
		if len(resp.Transitions) == kt.MaxTransitions {
			return nil, fmt.Errorf("service: more than %d transitions after bundle %d", kt.MaxTransitions, after)
		}
		x := &kt.Transition{Note: tr.note, BundleRecord: rec}
		if tr.size == sv.size {
			x.Note = sv.note
		}
		switch {
		case tr.size > walk && walk > 0:
			x.Consistency, err = tree.ConsistencyProof(ctx, walk, tr.size)
		case tr.size < walk:
			x.Consistency, err = tree.ConsistencyProof(ctx, tr.size, walk)
		}
		if err != nil {
			return nil, err
		}
		if x.Bundle, err = t.labelProofAt(ctx, bAlpha, epoch); err != nil {
			return nil, err
		}
		if rr, err := t.recordAt(ctx, rLabel, epoch); err == nil {
			p, err := t.labelProofAt(ctx, rAlpha, epoch)
			if err != nil {
				return nil, err
			}
			x.Rotation, x.RotationRecord = &p, rr
		} else if !errors.Is(err, errNoRecord) {
			return nil, err
		}
		resp.Transitions = append(resp.Transitions, x)
		walk = max(walk, tr.size)
	}
	if resp.Latest, err = t.checkpointUpdate(ctx, sv, walk); err != nil {
		return nil, err
	}
	if resp.Bundle, _, err = t.labelProof(ctx, sv, bAlpha); err != nil {
		return nil, err
	}
	_, rec, err := t.versionAt(ctx, bLabel, sv.size-1)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("service: %w: no trust bundle", store.ErrCorrupt)
	}
	resp.BundleRecord = rec
	return resp, nil
}

// errNoRecord is returned by recordAt for a label with no record of the
// epoch.
var errNoRecord = errors.New("service: no record of the epoch")

// recordAt returns the record of label published at epoch, or
// errNoRecord.
func (t *Tenant) recordAt(ctx context.Context, label vmap.Label, epoch uint64) (*kt.ValueRecord, error) {
	_, rec, err := t.versionAt(ctx, label, epoch)
	if err != nil {
		return nil, err
	}
	if rec == nil || rec.Epoch != epoch {
		return nil, errNoRecord
	}
	return rec, nil
}

// labelProofAt returns the proof of alpha's label at epoch, against the
// checkpoint of size epoch + 1.
func (t *Tenant) labelProofAt(ctx context.Context, alpha []byte, epoch uint64) (kt.LabelProof, error) {
	label, pi := t.label(alpha)
	entry, err := t.entryAt(ctx, epoch)
	if err != nil {
		return kt.LabelProof{}, err
	}
	incl, err := t.tree.Load().InclusionProof(ctx, epoch, epoch+1)
	if err != nil {
		return kt.LabelProof{}, err
	}
	mp, err := t.m.Prove(epoch, label)
	if err != nil {
		return kt.LabelProof{}, err
	}
	return kt.LabelProof{Entry: *entry, Inclusion: incl, VRFProof: pi, MapProof: mp}, nil
}

// announcesKey reports whether a kept transition's checkpoint announces a
// new log key (docs/spec/tlog.md §Log key rotation).
func announcesKey(note []byte) bool {
	i := bytes.Index(note, []byte("\n\n"))
	if i < 0 {
		return false
	}
	cp, err := tlog.ParseCheckpoint(note[:i+1])
	if err != nil {
		return false
	}
	k, err := tlog.NextLogKey(cp)
	return err == nil && k != nil
}
