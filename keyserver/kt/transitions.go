package kt

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/vmap"
)

// Following transitions (docs/spec/directory.md §Following transitions): a
// client whose pinned trust bundle is outdated, because it was offline
// across the epochs that published one or more new bundles, walks the
// directory's kept transitions in order, each verified under the bundle it
// holds at that point, then requires the latest checkpoint under the last
// bundle, fresh. Transition checkpoints may be old; that is the only rule
// relaxed, and the walk commits nothing unless the latest checkpoint,
// consistent with every transition, passes every rule.

// ErrTransitionsIncomplete is returned by FollowTransitions when the
// latest checkpoint does not verify under the bundle the transitions end
// with: the directory withheld a transition (or the latest checkpoint is
// stale). It wraps the reason; the client's state is unchanged.
var ErrTransitionsIncomplete = errors.New("kt: the transitions do not lead to the latest checkpoint")

// TransitionError reports a transition that FollowTransitions refused: the
// Index-th of the response, which was to follow the bundle of sequence
// Held. It matches ErrBundleRefused. Err is the reason: a crypto/tlog
// error for a checkpoint that does not verify under the held bundle, a
// *KTProofError (with its evidence) for a proof that does not, or a
// sentinel (ErrBundleRefused, org errors) for a bundle the client must not
// follow. The client's state is unchanged.
type TransitionError struct {
	Index int
	Held  uint64
	Err   error
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("kt: transition %d, after trust bundle %d, refused: %v", e.Index, e.Held, e.Err)
}

// Is makes errors.Is(err, ErrBundleRefused) true.
func (e *TransitionError) Is(target error) bool { return target == ErrBundleRefused }

// Unwrap returns the reason.
func (e *TransitionError) Unwrap() error { return e.Err }

// walkMaxAge is the MaxAge of the verifiers a walk checks transition
// checkpoints with: their age is not judged, the latest checkpoint's is.
const walkMaxAge = 100 * 365 * 24 * time.Hour

// walk is the trust state a transition walk builds, committed only at
// its end.
type walk struct {
	bundle *org.TrustBundle // the bundle held
	v      *tlog.Verifier   // its trust state, under bundle's policy with walkMaxAge
	// cpBundle is the bundle the trusted checkpoint is under, and cpKey
	// the log key it is signed by.
	cpBundle *org.TrustBundle
	cpKey    *keys.LogPublicKey
	pastCAs  []pastCA
	labels   map[vmap.Label]*labelState // labels changed by the walk
	hasEpoch bool
	epoch    uint64
	epochAt  int64
}

// size returns the size of the walk's trusted tree, and its checkpoint.
func (w *walk) size() (uint64, *tlog.Checkpoint) {
	cp, _ := w.v.Checkpoint()
	if cp == nil {
		return 0, nil
	}
	return cp.Size, cp
}

// FollowTransitions verifies the directory's transitions after the
// client's trust bundle and the latest checkpoint after them
// (docs/spec/directory.md §Following transitions), and if they pass,
// re-pins the client to the last bundle and accepts the latest checkpoint.
// It returns the bundle the client is pinned to: the one it held if there
// is no transition.
//
// resp must answer the request for the transitions after Bundle().Sequence
// from TreeSize(), else ErrBaseSize (ask again). Each transition must be
// the next bundle (sequence + 1), published at the epoch of a checkpoint
// that the held bundle's log key signed and a quorum of its witnesses
// cosigned, consistent with the tree the client trusts; it is followed as
// FollowTrustBundle follows (a new log key needs the checkpoint's
// announcement; a CA rotation needs the rotation statement, verified under
// the held CA), except that the checkpoint's age is not judged. A refused
// transition is a *TransitionError; a latest checkpoint that does not
// verify under the last bundle, fresh, is ErrTransitionsIncomplete. On any
// error the client's state is unchanged (a proven fork is returned, not
// recorded). The caller persists MarshalState.
func (c *Client) FollowTransitions(resp *TransitionsResponse, now time.Time) (*org.TrustBundle, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.verifier.Fork(); f != nil {
		return nil, f
	}
	if resp.BaseSize != c.treeSize() || resp.After != c.bundle.Sequence {
		return nil, fmt.Errorf("%w: transitions after bundle %d from size %d, client at bundle %d and size %d",
			ErrBaseSize, resp.After, resp.BaseSize, c.bundle.Sequence, c.treeSize())
	}
	w, err := c.startWalk()
	if err != nil {
		return nil, err
	}
	var raw []byte // the response's encoding, evidence for proof errors
	lastSize := uint64(0)
	for i, tr := range resp.Transitions {
		held := w.bundle.Sequence
		if lastSize, err = c.step(w, tr, lastSize, now); err != nil {
			var ke *KTProofError
			if errors.As(err, &ke) {
				if raw == nil {
					raw, _ = resp.Marshal()
				}
				ke.Checkpoint, ke.Response = bytes.Clone(tr.Note), raw
			}
			return nil, &TransitionError{Index: i, Held: held, Err: err}
		}
	}
	final, err := c.latest(w, &resp.Latest, now)
	if err != nil {
		return nil, err
	}
	if err := c.latestBundle(w, final, resp); err != nil {
		var ke *KTProofError
		if errors.As(err, &ke) {
			_, ke.Checkpoint = final.Checkpoint()
			ke.Response, _ = resp.Marshal()
		}
		return nil, err
	}
	// Commit.
	tcfg, err := VerifierConfig(w.bundle, c.tcfg.MaxAge, c.tcfg.MaxSkew)
	if err != nil {
		return nil, err
	}
	if !w.pastEqual(c.pastCAs) {
		clear(c.values) // values verified under a CA that is no longer pinned
	}
	c.verifier, c.bundle, c.tcfg, c.pastCAs = final, w.bundle, tcfg, w.pastCAs
	c.cpLogKey = nil
	if w.cpKey != nil && !w.cpKey.Equal(w.bundle.Log) {
		c.cpLogKey = w.cpKey
	}
	for l, st := range w.labels {
		c.labels[l] = st
	}
	if w.hasEpoch {
		c.hasEpoch, c.epoch, c.epochAt = true, w.epoch, w.epochAt
	}
	c.seen = max(now.Unix(), c.seen, final.Floor().Unix(), final.Time().Unix())
	return w.bundle, nil
}

func (w *walk) pastEqual(p []pastCA) bool {
	if len(p) != len(w.pastCAs) {
		return false
	}
	for i := range p {
		if p[i].until != w.pastCAs[i].until || !p[i].key.Equal(w.pastCAs[i].key) {
			return false
		}
	}
	return true
}

// startWalk returns a walk from the client's state. c.mu is held.
func (c *Client) startWalk() (*walk, error) {
	cfg, err := VerifierConfig(c.bundle, walkMaxAge, c.tcfg.MaxSkew)
	if err != nil {
		return nil, err
	}
	v, err := c.verifier.Repin(cfg)
	if err != nil {
		return nil, err
	}
	w := &walk{
		bundle: c.bundle, v: v, cpBundle: c.bundle, cpKey: c.bundle.Log,
		pastCAs: append([]pastCA(nil), c.pastCAs...), labels: map[vmap.Label]*labelState{},
		hasEpoch: c.hasEpoch, epoch: c.epoch, epochAt: c.epochAt,
	}
	if c.cpLogKey != nil {
		w.cpKey = c.cpLogKey
	}
	return w, nil
}

// walkLabel returns what the walk knows of label l.
func (c *Client) walkLabel(w *walk, l vmap.Label) *labelState {
	if st := w.labels[l]; st != nil {
		return st
	}
	return c.labels[l]
}

// step verifies one transition tr under the bundle w holds and moves w to
// the bundle it publishes (§Following transitions, steps 1 to 5). prev is
// the size of the previous transition's checkpoint (0 for the first); it
// returns this one's.
func (c *Client) step(w *walk, tr *Transition, prev uint64, now time.Time) (uint64, error) {
	if tr == nil {
		return 0, fmt.Errorf("%w: no transition", ErrMalformed)
	}
	cp, err := noteCheckpoint(tr.Note)
	if err != nil {
		return 0, err
	}
	return cp.Size, c.stepAt(w, tr, cp, prev, now)
}

func (c *Client) stepAt(w *walk, tr *Transition, cp *tlog.Checkpoint, prev uint64, now time.Time) error {
	h := w.bundle
	// 1. The checkpoint, under the held bundle, consistent with the tree
	// trusted so far.
	if cp.Size <= prev {
		return fmt.Errorf("%w: transition at size %d after one at %d", ErrBundleRefused, cp.Size, prev)
	}
	n, trusted := w.size()
	cfg, err := VerifierConfig(h, walkMaxAge, c.tcfg.MaxSkew)
	if err != nil {
		return err
	}
	historical := cp.Size <= n
	if !historical {
		nv, err := w.v.Repin(cfg)
		if err != nil {
			return err
		}
		if _, err := nv.VerifyCheckpoint(tr.Note, tr.Consistency, now); err != nil {
			return fmt.Errorf("kt: transition checkpoint: %w", err)
		}
		w.v = nv
	} else {
		// Inside the trusted tree: the note must still be the held
		// bundle's, and a prefix of the trusted tree.
		fv, err := tlog.NewVerifier(cfg)
		if err != nil {
			return err
		}
		if _, err := fv.VerifyCheckpoint(tr.Note, nil, now); err != nil {
			return fmt.Errorf("kt: transition checkpoint: %w", err)
		}
		if cp.Size == n && (cp.Root != trusted.Root || len(tr.Consistency) != 0) ||
			cp.Size < n && tlog.VerifyConsistency(cp.Size, n, tr.Consistency, cp.Root, trusted.Root) != nil {
			return fmt.Errorf("kt: transition checkpoint of size %d: %w: not a prefix of the trusted tree of size %d", cp.Size, tlog.ErrInconsistent, n)
		}
	}
	// 2. The trust-bundle label's record of the checkpoint's epoch.
	bAlpha, err := OrgAlpha(h.Tenant, org.OrgLabelTrustBundle)
	if err != nil {
		return err
	}
	pv := &proven{cp: cp, note: tr.Note, entry: tr.Bundle.Entry}
	if err := c.checkTransitionEpoch(w, pv, historical); err != nil {
		return err
	}
	bLabel, bCM, err := c.openAt(w, pv, bAlpha, &tr.Bundle, tr.BundleRecord, historical)
	if err != nil {
		return err
	}
	nb, err := org.ParseTrustBundle(tr.BundleRecord.Value)
	if err != nil {
		return ktErr(StepValue, pv, "trust bundle", err)
	}
	// 3. A CA rotation, verified under the held CA.
	ca := h.CA
	var rLabel vmap.Label
	var rCM vmap.Commitment
	if tr.Rotation != nil {
		if tr.Rotation.Entry != tr.Bundle.Entry {
			return ktErr(StepEpoch, pv, "the rotation is proven at another epoch than the bundle", nil)
		}
		rAlpha, err := OrgAlpha(h.Tenant, org.OrgLabelCARotation)
		if err != nil {
			return err
		}
		if rLabel, rCM, err = c.openAt(w, pv, rAlpha, tr.Rotation, tr.RotationRecord, historical); err != nil {
			return err
		}
		r, err := org.ParseCARotation(tr.RotationRecord.Value)
		if err != nil {
			return ktErr(StepValue, pv, "CA rotation", err)
		}
		if err := r.Verify(h.CA, h.Tenant); err != nil {
			return fmt.Errorf("%w: CA rotation: %w", ErrBundleRefused, err)
		}
		if n := len(w.pastCAs); n > 0 && pv.entry.Epoch <= w.pastCAs[n-1].until {
			return fmt.Errorf("%w: CA rotation of epoch %d", ErrBundleRefused, pv.entry.Epoch)
		}
		ca = r.New
	}
	// 4. The bundle: the next one, signed by the CA, its log key
	// announced by the checkpoint if it changed.
	if err := nb.Verify(ca, h.Tenant); err != nil {
		if tr.Rotation == nil && nb.Tenant == h.Tenant && nb.CA != nil && nb.CA.Equal(h.CA) {
			// The directory serves only CA-signed values.
			return ktErr(StepValue, pv, "trust bundle signature", err)
		}
		return fmt.Errorf("%w: %w", ErrBundleRefused, err)
	}
	if err := successor(h, nb); err != nil {
		return err
	}
	if nb.Sequence != h.Sequence+1 {
		return fmt.Errorf("%w: bundle %d after bundle %d: a transition is missing", ErrBundleRefused, nb.Sequence, h.Sequence)
	}
	next, err := tlog.NextLogKey(cp)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBundleRefused, err)
	}
	switch newLog := !nb.Log.Equal(h.Log); {
	case newLog && (next == nil || !next.Equal(nb.Log)):
		return fmt.Errorf("%w: the checkpoint of size %d does not announce the bundle's log key", ErrBundleRefused, cp.Size)
	case newLog && cp.Size < n:
		return fmt.Errorf("%w: a log key announced at size %d, before the trusted checkpoint of size %d", ErrBundleRefused, cp.Size, n)
	case !newLog && next != nil:
		return fmt.Errorf("%w: the checkpoint of size %d announces a log key the bundle does not name", ErrBundleRefused, cp.Size)
	}
	ncfg, err := VerifierConfig(nb, walkMaxAge, c.tcfg.MaxSkew)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBundleRefused, err)
	}
	nv, err := w.v.Repin(ncfg)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBundleRefused, err)
	}
	// 5. Move on.
	switch {
	case !historical:
		w.cpBundle, w.cpKey = h, h.Log
		w.hasEpoch, w.epoch, w.epochAt = true, pv.entry.Epoch, pv.entry.Time.Unix()
	case cp.Size < n:
		w.cpBundle = nb // the trusted checkpoint is after the transition
	}
	if tr.Rotation != nil {
		w.pastCAs, _ = mergePastCAs(w.pastCAs, []pastCA{{key: h.CA, until: pv.entry.Epoch}})
		trackWalk(w, c.walkLabel(w, rLabel), rLabel, tr.RotationRecord.Version, rCM, tr.RotationRecord.Epoch)
	}
	trackWalk(w, c.walkLabel(w, bLabel), bLabel, tr.BundleRecord.Version, bCM, tr.BundleRecord.Epoch)
	w.bundle, w.v = nb, nv
	return nil
}

func trackWalk(w *walk, st *labelState, l vmap.Label, version uint32, cm vmap.Commitment, epoch uint64) {
	if st == nil || version > st.version {
		w.labels[l] = &labelState{version: version, commitment: cm, epoch: epoch}
	}
}

// checkTransitionEpoch is §Client verification step 2 for a transition:
// the entry is the checkpoint's last leaf, and a checkpoint beyond the
// trusted tree does not take the epoch or its time back.
func (c *Client) checkTransitionEpoch(w *walk, pv *proven, historical bool) error {
	e := pv.entry
	if pv.cp.Size == 0 || e.Epoch != pv.cp.Size-1 {
		return ktErr(StepEpoch, pv, fmt.Sprintf("entry of epoch %d is not the last leaf of a tree of size %d", e.Epoch, pv.cp.Size), nil)
	}
	if !historical && w.hasEpoch {
		at := e.Time.Unix()
		if e.Epoch < w.epoch || at < w.epochAt || (e.Epoch == w.epoch && at != w.epochAt) {
			return ktErr(StepEpoch, pv, fmt.Sprintf("epoch %d at %d after epoch %d at %d", e.Epoch, at, w.epoch, w.epochAt), nil)
		}
	}
	return nil
}

// openAt runs §Client verification steps 3 to 7 for the label of alpha
// against the transition checkpoint pv.cp (step 2 checked): the entry's
// inclusion, the VRF proof, a map proof of presence, and a record
// published at the entry's epoch that opens the map's commitment and does
// not roll the label back (a version below the one known only for a
// checkpoint inside the trusted tree). It returns the label and the
// commitment.
func (c *Client) openAt(w *walk, pv *proven, alpha []byte, p *LabelProof, rec *ValueRecord, historical bool) (vmap.Label, vmap.Commitment, error) {
	return c.openRecord(w, pv, alpha, p, rec, historical, true)
}

// openRecord is openAt; with exact false, the record may be of any epoch
// up to the entry's.
func (c *Client) openRecord(w *walk, pv *proven, alpha []byte, p *LabelProof, rec *ValueRecord, historical, exact bool) (vmap.Label, vmap.Commitment, error) {
	leaf, err := p.Entry.LeafHash()
	if err != nil {
		return vmap.Label{}, vmap.Commitment{}, ktErr(StepEpoch, pv, "entry does not encode", err)
	}
	if err := tlog.VerifyInclusion(leaf, p.Entry.Epoch, pv.cp.Size, p.Inclusion, pv.cp.Root); err != nil {
		return vmap.Label{}, vmap.Commitment{}, ktErr(StepLogInclusion, pv, "epoch entry not in the transition checkpoint's tree", err)
	}
	label, err := VerifyLabel(c.bundle.VRF, alpha, p.VRFProof)
	if err != nil {
		return label, vmap.Commitment{}, ktErr(StepVRF, pv, "VRF proof does not verify for the label asked for", err)
	}
	lp := *pv
	lp.label = label
	if p.MapProof == nil {
		return label, vmap.Commitment{}, ktErr(StepMap, &lp, "no map proof", nil)
	}
	res, err := vmap.Verify(p.Entry.MapRoot, label, p.MapProof)
	if err != nil {
		return label, vmap.Commitment{}, ktErr(StepMap, &lp, "map proof does not verify against the epoch's root", err)
	}
	if !res.Present || rec == nil {
		return label, vmap.Commitment{}, ktErr(StepRecord, &lp, "label absent at the transition", nil)
	}
	cm, err := Commit(label, rec)
	switch {
	case err != nil:
		return label, cm, ktErr(StepRecord, &lp, "record does not encode", err)
	case cm != res.Commitment:
		return label, cm, ktErr(StepRecord, &lp, "record does not open the map's commitment", nil)
	case exact && rec.Epoch != p.Entry.Epoch:
		return label, cm, ktErr(StepRecord, &lp, fmt.Sprintf("record of epoch %d, not published by the transition's epoch %d", rec.Epoch, p.Entry.Epoch), nil)
	case rec.Epoch > p.Entry.Epoch:
		return label, cm, ktErr(StepRecord, &lp, fmt.Sprintf("record of epoch %d in the map of epoch %d", rec.Epoch, p.Entry.Epoch), nil)
	}
	if st := c.walkLabel(w, label); st != nil {
		if (rec.Version == st.version && cm != st.commitment) || (rec.Version < st.version && !historical) {
			return label, cm, ktErr(StepRollback, &lp, fmt.Sprintf("version %d, version %d seen", rec.Version, st.version), nil)
		}
	}
	return label, cm, nil
}

// latest verifies the latest checkpoint cu after the walk w (§Following
// transitions, step 6) and returns the verifier, under the last bundle's
// policy and the client's MaxAge, that trusts it.
func (c *Client) latest(w *walk, cu *CheckpointUpdate, now time.Time) (*tlog.Verifier, error) {
	n, _ := w.size()
	if cu.BaseSize != n {
		return nil, fmt.Errorf("%w: latest checkpoint from size %d, the transitions end at %d", ErrBaseSize, cu.BaseSize, n)
	}
	cfg, err := VerifierConfig(w.bundle, c.tcfg.MaxAge, c.tcfg.MaxSkew)
	if err != nil {
		return nil, err
	}
	incomplete := func(err error) error { return fmt.Errorf("%w: %w", ErrTransitionsIncomplete, err) }
	_, trustedNote := w.v.Checkpoint()
	if len(cu.Note) == 0 || bytes.Equal(cu.Note, trustedNote) {
		// The checkpoint trusted after the walk, judged for freshness.
		if trustedNote == nil {
			return nil, ErrNoCheckpoint
		}
		if len(cu.Consistency) != 0 {
			return nil, fmt.Errorf("kt: %w: consistency proof for the trusted checkpoint", tlog.ErrBadProof)
		}
		fv, err := w.v.Repin(cfg)
		if err != nil {
			return nil, err
		}
		if err := fv.CheckClock(now); err != nil {
			return nil, incomplete(err)
		}
		t, wc := max(now.Unix(), c.seen, fv.Floor().Unix()), fv.Time().Unix()
		if t-wc > c.maxAge {
			return nil, incomplete(fmt.Errorf("%w: witnessed at %v, %ds before %v", tlog.ErrStale, time.Unix(wc, 0).UTC(), t-wc, time.Unix(t, 0).UTC()))
		}
		return fv, nil
	}
	cp, err := noteCheckpoint(cu.Note)
	if err != nil {
		return nil, err
	}
	if n > 0 && cp.Size == n {
		// The trusted checkpoint cosigned again: under the bundle it is
		// under.
		pcfg, err := VerifierConfig(w.cpBundle, c.tcfg.MaxAge, c.tcfg.MaxSkew)
		if err != nil {
			return nil, err
		}
		pcfg.LogKey = w.cpKey
		sv, err := w.v.Repin(pcfg)
		if err != nil {
			return nil, err
		}
		if _, err := sv.VerifyCheckpoint(cu.Note, cu.Consistency, now); err != nil {
			return nil, incomplete(err)
		}
		return sv.Repin(cfg)
	}
	fv, err := w.v.Repin(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := fv.VerifyCheckpoint(cu.Note, cu.Consistency, now); err != nil {
		return nil, incomplete(err)
	}
	w.cpKey = w.bundle.Log
	return fv, nil
}

// latestBundle checks the proof of the trust-bundle label at the latest
// checkpoint, which v trusts (§Following transitions, step 7): its latest
// record must hold the bundle the walk ends with, so that no transition
// was withheld. It records the label's version and the epoch in w.
func (c *Client) latestBundle(w *walk, v *tlog.Verifier, resp *TransitionsResponse) error {
	cp, note := v.Checkpoint()
	pv := &proven{cp: cp, note: note, entry: resp.Bundle.Entry}
	if err := c.checkTransitionEpoch(w, pv, false); err != nil {
		return err
	}
	alpha, err := OrgAlpha(w.bundle.Tenant, org.OrgLabelTrustBundle)
	if err != nil {
		return err
	}
	label, cm, err := c.openRecord(w, pv, alpha, &resp.Bundle, resp.BundleRecord, false, false)
	if err != nil {
		return err
	}
	enc, err := w.bundle.Marshal()
	if err != nil {
		return err
	}
	if !bytes.Equal(resp.BundleRecord.Value, enc) {
		seq := "another bundle"
		if b, err := org.ParseTrustBundle(resp.BundleRecord.Value); err == nil {
			seq = fmt.Sprintf("bundle %d", b.Sequence)
		}
		return fmt.Errorf("%w: the latest checkpoint's trust bundle is %s, the transitions end at bundle %d", ErrTransitionsIncomplete, seq, w.bundle.Sequence)
	}
	trackWalk(w, c.walkLabel(w, label), label, resp.BundleRecord.Version, cm, resp.BundleRecord.Epoch)
	w.hasEpoch, w.epoch, w.epochAt = true, pv.entry.Epoch, pv.entry.Time.Unix()
	return nil
}
