package kt

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/vmap"
)

// Config is a client's policy for one tenant's key directory. Everything
// but the two durations comes from the tenant's trust bundle.
type Config struct {
	// Bundle is the tenant's trust bundle. The caller MUST have checked
	// it (org.CheckTrustBundle against the enrolment code's fingerprint, or
	// a later bundle through a CA rotation) before passing it here.
	Bundle *org.TrustBundle
	// MaxAge is how old the witnessed time of a checkpoint may be
	// (docs/spec/tlog.md §Client verification). RECOMMENDED: one hour.
	MaxAge time.Duration
	// MaxSkew is how far a cosignature may be ahead of the client's
	// clock, and the clock behind the client's time floor. Zero means
	// tlog.DefaultMaxSkew.
	MaxSkew time.Duration
	// NotBefore is an authenticated time floor later than the bundle's
	// issue time (docs/spec/org.md §Time floor at enrolment), or zero.
	// Enrol sets it; the client persists its floor in its state, so a
	// restored client needs none.
	NotBefore time.Time
}

// VerifierConfig returns the crypto/tlog policy a trust bundle implies
// (docs/spec/directory.md §Client configuration): the log's origin and key,
// every witness key (both keys of a witness that has two, so that both are
// required), the quorum, and the bundle's issue time as NotBefore, the
// least time floor.
func VerifierConfig(b *org.TrustBundle, maxAge, maxSkew time.Duration) (tlog.VerifierConfig, error) {
	if b == nil || b.Log == nil || b.VRF == nil || b.CA == nil {
		return tlog.VerifierConfig{}, errors.New("kt: config: incomplete trust bundle")
	}
	var ws []*tlog.WitnessPublicKey
	for _, w := range b.Witnesses.Witnesses {
		k, err := tlog.NewWitnessPublicKey(w.Name, tlog.CosignatureEd25519, w.Ed25519)
		if err != nil {
			return tlog.VerifierConfig{}, fmt.Errorf("kt: config: witness %q: %w", w.Name, err)
		}
		ws = append(ws, k)
		if len(w.MLDSA44) > 0 {
			k, err := tlog.NewWitnessPublicKey(w.Name, tlog.CosignatureMLDSA44, w.MLDSA44)
			if err != nil {
				return tlog.VerifierConfig{}, fmt.Errorf("kt: config: witness %q: %w", w.Name, err)
			}
			ws = append(ws, k)
		}
	}
	return tlog.VerifierConfig{
		Origin: b.LogOrigin, LogKey: b.Log, Witnesses: ws, Quorum: b.Witnesses.Quorum,
		MaxAge: maxAge, MaxSkew: maxSkew, NotBefore: b.IssuedAt,
	}, nil
}

// Client verifies the key directory's responses for one tenant, with no
// I/O (docs/spec/directory.md §Client verification). It keeps the trust
// state that makes verification stateful: the last checkpoint it accepted
// (through a crypto/tlog Verifier), the last epoch entry, the latest
// version and commitment of every label it verified, and the monitoring
// state of its own user's label.
//
// Every method that verifies a response either accepts it, committing the
// new state, or rejects it and leaves the state byte-identical; the one
// exception is a proven fork, which crypto/tlog makes final. The caller
// persists MarshalState after each accepted response. A Client is safe for
// concurrent use.
type Client struct {
	bundle *org.TrustBundle
	tcfg   tlog.VerifierConfig
	maxAge int64 // seconds

	mu       sync.Mutex
	verifier *tlog.Verifier
	seen     int64 // high-water mark of the client's time at acceptances, POSIX seconds
	hasEpoch bool
	epoch    uint64 // the last accepted epoch entry
	epochAt  int64  // its time
	labels   map[vmap.Label]*labelState
	monitors map[org.UserID]*monitorState
	// pastCAs are the CA keys before the pinned one, oldest first
	// (§CA history, cahistory.go).
	pastCAs []pastCA
	// cpLogKey is the log key of the trusted checkpoint when it is not
	// the pinned bundle's: after following a log key rotation, until the
	// next checkpoint is accepted.
	cpLogKey *keys.LogPublicKey

	// In-memory caches, never persisted (§Client verification, caching):
	// VRF proofs already verified, by VRF input, and the user value last
	// verified under each label, by commitment.
	vrfs   map[string]verifiedVRF
	values map[vmap.Label]*verifiedValue
	// held is the epoch entry last proven to be the last leaf of the
	// checkpoint of size heldSize and root heldRoot (§Held entry); part of
	// the client state while that checkpoint is the trusted one.
	held     *EpochEntry
	heldSize uint64
	heldRoot tlog.Hash
	// CA signatures verified (cache.go), part of the client state.
	sigs   sigCache
	caID   [32]byte           // SHA-256 of caIDOf's encoding
	caIDOf *keys.OrgPublicKey // the CA key caID is of
}

// maxCache bounds each in-memory cache; a full cache is emptied.
const maxCache = 1 << 16

type verifiedVRF struct {
	pi    []byte
	label vmap.Label
}

type verifiedValue struct {
	commitment vmap.Commitment
	value      *org.UserValue
	revoked    map[uint64]bool
}

// labelState is what the client remembers of a label it verified.
type labelState struct {
	version    uint32
	commitment vmap.Commitment
	epoch      uint64 // the version's record epoch
}

// NewClient returns a client with no trusted checkpoint.
func NewClient(cfg Config) (*Client, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	if c.verifier, err = tlog.NewVerifier(c.tcfg); err != nil {
		return nil, fmt.Errorf("kt: %w", err)
	}
	return c, nil
}

func newClient(cfg Config) (*Client, error) {
	tcfg, err := VerifierConfig(cfg.Bundle, cfg.MaxAge, cfg.MaxSkew)
	if err != nil {
		return nil, err
	}
	if cfg.NotBefore.After(tcfg.NotBefore) {
		tcfg.NotBefore = cfg.NotBefore
	}
	c := &Client{
		bundle: cfg.Bundle, tcfg: tcfg, maxAge: int64(cfg.MaxAge / time.Second),
		labels: map[vmap.Label]*labelState{}, monitors: map[org.UserID]*monitorState{},
		vrfs: map[string]verifiedVRF{}, values: map[vmap.Label]*verifiedValue{},
	}
	return c, nil
}

// Tenant returns the tenant the client verifies.
func (c *Client) Tenant() org.TenantID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bundle.Tenant
}

// TreeSize returns the size of the trusted checkpoint's tree, 0 before
// bootstrap. A client sends it with every request, so that the directory
// proves its answer relative to it (CheckpointUpdate.BaseSize).
func (c *Client) TreeSize() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.treeSize()
}

// treeSize is TreeSize with c.mu held.
func (c *Client) treeSize() uint64 {
	cp, _ := c.verifier.Checkpoint()
	if cp == nil {
		return 0
	}
	return cp.Size
}

// Checkpoint returns the trusted checkpoint and its signed note, or nil
// before bootstrap.
func (c *Client) Checkpoint() (*tlog.Checkpoint, []byte) { return c.verifier.Checkpoint() }

// Fork returns the proven fork evidence, or nil.
func (c *Client) Fork() *tlog.ForkError { return c.verifier.Fork() }

// --- verification core ---

// proven is a label proof verified against a checkpoint that is not yet
// accepted: the outcome of openProof, committed by finish.
type proven struct {
	cp     *tlog.Checkpoint
	note   []byte      // the checkpoint note the proof is checked against
	fresh  bool        // note is new: finish passes it to the tlog Verifier
	proof  []tlog.Hash // its consistency proof
	label  vmap.Label
	entry  EpochEntry
	mapRes vmap.Result
	// rec is the record checkRecord accepted: finish records its epoch
	// with the label's version.
	rec *ValueRecord
	// keepEpoch leaves the client's last accepted epoch entry as it is: a
	// monitoring page that ends before it (monitor.go).
	keepEpoch bool
	// lastLeaf: entry was shown to be the last leaf of cp's tree (steps
	// 2 and 3); finish then holds it (§Held entry).
	lastLeaf bool
}

// ktErr builds a *KTProofError; fail fills in the evidence.
func ktErr(step ProofStep, pv *proven, reason string, err error) *KTProofError {
	e := &KTProofError{Step: step, Reason: reason, Err: err}
	if pv != nil {
		e.Label, e.Epoch = pv.label, pv.entry.Epoch
	}
	return e
}

// openProof runs §Client verification steps 1 to 6 on a label proof for
// alpha: the checkpoint's structure, the epoch entry, its inclusion, the VRF
// proof and the map proof. It changes no state. A failure that is the
// directory's is a *KTProofError without its evidence fields.
func (c *Client) openProof(alpha []byte, cu *CheckpointUpdate, p *LabelProof, now time.Time) (*proven, error) {
	return c.openProofWith(alpha, cu, p, now, nil)
}

// vrfResult is the outcome of VerifyLabel for a response's alpha and VRF
// proof, computed ahead of openProofWith (concurrently with other checks).
type vrfResult struct {
	label vmap.Label
	err   error
}

// vrfCached reports whether the VRF proof pi for alpha is byte-identical
// to one verified before.
func (c *Client) vrfCached(alpha, pi []byte) bool {
	v, ok := c.vrfs[string(alpha)]
	return ok && bytes.Equal(v.pi, pi)
}

// openProofWith is openProof, taking step 4's VerifyLabel outcome from
// pre when it is not nil; pre must be VerifyLabel(c.bundle.VRF, alpha,
// p.VRFProof). Its outcome is consulted at step 4 only, so errors keep
// their order.
func (c *Client) openProofWith(alpha []byte, cu *CheckpointUpdate, p *LabelProof, now time.Time, pre *vrfResult) (*proven, error) {
	pv, err := c.openCheckpoint(cu, now)
	if err != nil {
		return pv, err
	}
	// 2. The epoch entry is the checkpoint's last leaf and does not go back.
	pv.entry = p.Entry
	if pv.cp.Size == 0 || p.Entry.Epoch != pv.cp.Size-1 {
		return pv, ktErr(StepEpoch, pv, fmt.Sprintf("entry of epoch %d is not the last leaf of a tree of size %d", p.Entry.Epoch, pv.cp.Size), nil)
	}
	if c.hasEpoch {
		at := p.Entry.Time.Unix()
		if p.Entry.Epoch < c.epoch || at < c.epochAt || (p.Entry.Epoch == c.epoch && at != c.epochAt) {
			return pv, ktErr(StepEpoch, pv, fmt.Sprintf("epoch %d at %d after epoch %d at %d", p.Entry.Epoch, at, c.epoch, c.epochAt), nil)
		}
	}
	// 3. The entry is in the checkpoint's tree.
	if err := c.checkLastLeaf(pv, cu, &p.Entry, p.Inclusion); err != nil {
		return pv, err
	}
	pv.lastLeaf = true
	// 4. The label is the VRF output of alpha under the pinned key. A
	// proof byte-identical to one verified before needs no new check.
	if c.vrfCached(alpha, p.VRFProof) {
		pv.label = c.vrfs[string(alpha)].label
	} else {
		if pre != nil {
			pv.label, err = pre.label, pre.err
		} else {
			pv.label, err = VerifyLabel(c.bundle.VRF, alpha, p.VRFProof)
		}
		if err != nil {
			return pv, ktErr(StepVRF, pv, "VRF proof does not verify for the label asked for", err)
		}
		if len(c.vrfs) >= maxCache {
			clear(c.vrfs)
		}
		c.vrfs[string(alpha)] = verifiedVRF{pi: bytes.Clone(p.VRFProof), label: pv.label}
	}
	// 5. The map proof, against the entry's map root.
	if p.MapProof == nil {
		return pv, ktErr(StepMap, pv, "no map proof", nil)
	}
	if pv.mapRes, err = vmap.Verify(p.Entry.MapRoot, pv.label, p.MapProof); err != nil {
		return pv, ktErr(StepMap, pv, "map proof does not verify against the epoch's root", err)
	}
	// 6. A label the client saw present never vanishes (labels are never
	// removed from the map).
	if st := c.labels[pv.label]; st != nil && !pv.mapRes.Present {
		return pv, ktErr(StepRollback, pv, fmt.Sprintf("label seen at version %d is now absent", st.version), nil)
	}
	return pv, nil
}

// checkLastLeaf is step 3 for entry, the last leaf of pv.cp's tree: its
// inclusion proof incl is anchored in cu's consistency proof for a new,
// larger tree than the client's, may be empty for the entry the client
// holds, and is otherwise the whole RFC 6962 proof.
func (c *Client) checkLastLeaf(pv *proven, cu *CheckpointUpdate, entry *EpochEntry, incl []tlog.Hash) error {
	leaf, err := entry.LeafHash()
	if err != nil {
		return ktErr(StepEpoch, pv, "entry does not encode", err)
	}
	switch {
	case pv.fresh && cu.BaseSize > 0 && pv.cp.Size > cu.BaseSize:
		// A new, larger tree: the proof is anchored in the consistency
		// proof's node that covers the last leaf, which step 9 verifies
		// from the trusted tree to the new root (§Anchored inclusion).
		if err := tlog.VerifyAnchoredInclusion(leaf, cu.BaseSize, pv.cp.Size, cu.Consistency, incl); err != nil {
			return ktErr(StepLogInclusion, pv, "epoch entry not the last leaf of the consistency proof's tree", err)
		}
	case len(incl) == 0 && c.holds(pv.cp, leaf):
		// An empty inclusion proof may stand for the entry the client
		// holds as the last leaf of this very tree (§Held entry).
	default:
		if err := tlog.VerifyInclusion(leaf, entry.Epoch, pv.cp.Size, incl, pv.cp.Root); err != nil {
			return ktErr(StepLogInclusion, pv, "epoch entry not in the checkpoint's tree", err)
		}
	}
	return nil
}

// openCheckpoint is step 1: the response's checkpoint, relative to the
// client's. It changes no state. Every call that may reach finish starts
// here (openProofWith, Monitor), so it first drops the signatures staged by
// an earlier call that was not accepted: finish commits only the current
// call's.
func (c *Client) openCheckpoint(cu *CheckpointUpdate, now time.Time) (*proven, error) {
	c.sigs.discard()
	if f := c.verifier.Fork(); f != nil {
		return nil, f
	}
	trusted, trustedNote := c.verifier.Checkpoint()
	var trustedSize uint64
	if trusted != nil {
		trustedSize = trusted.Size
	}
	// 1. The checkpoint, relative to the client's.
	if cu.BaseSize != trustedSize {
		return nil, fmt.Errorf("%w: response from size %d, client at %d", ErrBaseSize, cu.BaseSize, trustedSize)
	}
	pv := &proven{}
	switch {
	case len(cu.Note) == 0 || bytes.Equal(cu.Note, trustedNote):
		if trusted == nil {
			return nil, ErrNoCheckpoint
		}
		if len(cu.Consistency) != 0 {
			return nil, fmt.Errorf("kt: %w: consistency proof for the trusted checkpoint", tlog.ErrBadProof)
		}
		pv.cp, pv.note = trusted, trustedNote
	default:
		cp, err := noteCheckpoint(cu.Note)
		if err != nil {
			return nil, err
		}
		pv.cp, pv.note, pv.fresh, pv.proof = cp, cu.Note, true, cu.Consistency
		// A smaller tree, or another root for the trusted size, is the
		// tlog Verifier's to judge (ErrSizeRollback, a fork): it rejects
		// it whatever the rest of the response says.
		if trusted != nil && (cp.Size < trusted.Size || (cp.Size == trusted.Size && cp.Root != trusted.Root)) {
			if _, err := c.verifier.VerifyCheckpoint(cu.Note, cu.Consistency, now); err != nil {
				return nil, fmt.Errorf("kt: checkpoint: %w", err)
			}
			return nil, errors.New("kt: checkpoint: tlog accepted a rolled-back checkpoint")
		}
	}
	return pv, nil
}

// checkRecord runs step 7 for a lookup: the record opens the map's
// commitment, was published no later than the entry's epoch, and does not
// roll the label back.
func (c *Client) checkRecord(pv *proven, rec *ValueRecord) error {
	if rec == nil {
		return ktErr(StepRecord, pv, "no record for a present label", nil)
	}
	cm, err := Commit(pv.label, rec)
	if err != nil {
		return ktErr(StepRecord, pv, "record does not encode", err)
	}
	if cm != pv.mapRes.Commitment {
		return ktErr(StepRecord, pv, "record does not open the map's commitment", nil)
	}
	if rec.Epoch > pv.entry.Epoch {
		return ktErr(StepRecord, pv, fmt.Sprintf("record of epoch %d in the map of epoch %d", rec.Epoch, pv.entry.Epoch), nil)
	}
	if err := c.checkRollback(pv, rec.Version, cm); err != nil {
		return err
	}
	if err := c.checkRecordOrder(pv, rec.Version, rec.Epoch); err != nil {
		return err
	}
	pv.rec = rec
	return nil
}

// checkRollback is step 7's rollback rule on versions: no version below
// the one the client saw, and the same commitment for that version.
func (c *Client) checkRollback(pv *proven, version uint32, cm vmap.Commitment) error {
	st := c.labels[pv.label]
	switch {
	case st == nil:
	case version < st.version:
		return ktErr(StepRollback, pv, fmt.Sprintf("version %d after version %d", version, st.version), nil)
	case version == st.version && cm != st.commitment:
		return ktErr(StepRollback, pv, fmt.Sprintf("version %d with another commitment", version), nil)
	}
	return nil
}

// checkRecordOrder is step 7's rule on epochs: a version after the one
// the client saw has a later epoch (a label changes at most once per
// epoch), so that a record cannot claim an epoch before one the client
// knows the label had already passed.
func (c *Client) checkRecordOrder(pv *proven, version uint32, epoch uint64) error {
	if st := c.labels[pv.label]; st != nil && version > st.version && epoch <= st.epoch {
		return ktErr(StepRollback, pv, fmt.Sprintf("version %d of epoch %d after version %d of epoch %d", version, epoch, st.version, st.epoch), nil)
	}
	return nil
}

// fail turns an error of openProof or of the checks after it into what
// the caller sees. A *KTProofError gets its evidence; for a new
// checkpoint it is reported only if the log did sign the checkpoint, since
// otherwise the checkpoint is what is wrong.
func (c *Client) fail(pv *proven, err error, resp interface{ Marshal() ([]byte, error) }) error {
	var ke *KTProofError
	if !errors.As(err, &ke) {
		return err
	}
	if pv != nil && pv.fresh {
		if _, oerr := tlog.OpenCheckpoint(pv.note, c.tcfg.Origin, c.tcfg.LogKey); oerr != nil {
			return fmt.Errorf("kt: checkpoint: %w", oerr)
		}
	}
	if pv != nil {
		ke.Checkpoint = bytes.Clone(pv.note)
	}
	ke.Response, _ = resp.Marshal()
	return err
}

// finish accepts the checkpoint of pv at time now (step 9) and, only if
// it is accepted, commits the epoch, the label's state and whatever commit
// changes.
func (c *Client) finish(pv *proven, now time.Time, commit func()) error {
	if pv.fresh {
		if _, err := c.verifier.VerifyCheckpoint(pv.note, pv.proof, now); err != nil {
			return fmt.Errorf("kt: checkpoint: %w", err)
		}
		c.cpLogKey = nil
	} else if err := c.checkFresh(now); err != nil {
		return err
	}
	w := c.verifier.Time().Unix()
	c.seen = max(now.Unix(), c.seen, c.floor(), w)
	if !pv.keepEpoch {
		c.hasEpoch, c.epoch, c.epochAt = true, pv.entry.Epoch, pv.entry.Time.Unix()
	}
	if pv.lastLeaf {
		e := pv.entry
		c.held, c.heldSize, c.heldRoot = &e, pv.cp.Size, pv.cp.Root
	}
	c.sigs.commit()
	if commit != nil {
		commit()
	}
	if r := pv.rec; r != nil {
		// The epoch of the version tracked, from the record checkRecord
		// accepted (step 7's rule on epochs needs it).
		if st := c.labels[pv.label]; st != nil && st.version == r.Version {
			st.epoch = r.Epoch
		}
	}
	return nil
}

// holds reports whether the client holds, as the last leaf of the tree
// of cp, the entry whose leaf hash is leaf (§Held entry).
func (c *Client) holds(cp *tlog.Checkpoint, leaf tlog.Hash) bool {
	if c.held == nil || c.heldSize != cp.Size || c.heldRoot != cp.Root {
		return false
	}
	h, err := c.held.LeafHash()
	return err == nil && h == leaf
}

// heldEntry returns the entry the client holds as the last leaf of the
// checkpoint it trusts, or nil (also for a forked client, which accepts
// nothing more); c.mu held.
func (c *Client) heldEntry() *EpochEntry {
	cp, _ := c.verifier.Checkpoint()
	if cp == nil || c.held == nil || c.heldSize != cp.Size || c.heldRoot != cp.Root || c.verifier.Fork() != nil {
		return nil
	}
	return c.held
}

// HeldEntry returns the epoch of the entry the client holds as the last
// leaf of the checkpoint it trusts, and whether it holds one
// (docs/spec/directory.md §Held entry). A client that does sends it with
// its tree size in lookups, and the directory then leaves out the
// entry's inclusion proof while its checkpoint is still the client's.
// The held entry is part of the client state (MarshalState), so a
// restored client still holds it.
func (c *Client) HeldEntry() (epoch uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	held := c.heldEntry()
	if held == nil {
		return 0, false
	}
	return held.Epoch, true
}

// floor returns the client's time floor F (docs/spec/tlog.md §Time
// floor), POSIX seconds: its tlog verifier's, which includes the bundle's
// issue time and never goes back.
func (c *Client) floor() int64 { return c.verifier.Floor().Unix() }

// Floor returns the client's time floor: a time it has authenticated
// evidence has passed (docs/spec/tlog.md §Time floor). It never goes back.
func (c *Client) Floor() time.Time { return c.verifier.Floor() }

// clientTime returns the client's time T = max(now, S, F), which never
// goes back (docs/spec/directory.md §Client verification).
func (c *Client) clientTime(now time.Time) time.Time {
	return time.Unix(max(now.Unix(), c.seen, c.floor()), 0)
}

// checkFresh applies tlog's freshness and clock rules (docs/spec/tlog.md
// §Client verification, steps 5 and 6) to the trusted checkpoint, for a
// response that reuses it: its witnessed time is at most MaxAge before the
// client's time, which never goes back, and the local clock is not behind
// the time floor (a *tlog.ClockError).
func (c *Client) checkFresh(now time.Time) error {
	if err := c.verifier.CheckClock(now); err != nil {
		return fmt.Errorf("kt: %w", err)
	}
	t := max(now.Unix(), c.seen, c.floor())
	w := c.verifier.Time().Unix()
	if t-w > c.maxAge {
		return fmt.Errorf("kt: checkpoint: %w: witnessed at %v, %ds before %v", tlog.ErrStale,
			time.Unix(w, 0).UTC(), t-w, time.Unix(t, 0).UTC())
	}
	return nil
}

// noteCheckpoint parses the checkpoint text of a signed note without
// verifying anything: the text is everything up to the blank line that
// separates it from the signatures (C2SP signed-note).
func noteCheckpoint(note []byte) (*tlog.Checkpoint, error) {
	i := bytes.Index(note, []byte("\n\n"))
	if i < 0 {
		return nil, fmt.Errorf("kt: checkpoint: %w: not a signed note", tlog.ErrMalformed)
	}
	cp, err := tlog.ParseCheckpoint(note[:i+1])
	if err != nil {
		return nil, fmt.Errorf("kt: checkpoint: %w", err)
	}
	return cp, nil
}

// track records the latest version and commitment of a label. The
// version's epoch is set by finish, from the record checkRecord accepted,
// or by trackEpoch.
func (c *Client) track(label vmap.Label, version uint32, cm vmap.Commitment) {
	if st := c.labels[label]; st == nil || version > st.version {
		c.labels[label] = &labelState{version: version, commitment: cm}
	}
}

// trackEpoch is track with the version's record epoch.
func (c *Client) trackEpoch(label vmap.Label, version uint32, cm vmap.Commitment, epoch uint64) {
	c.track(label, version, cm)
	if st := c.labels[label]; st.version == version {
		st.epoch = epoch
	}
}

// UpdateCheckpoint verifies a consistency response and, if it passes,
// makes its checkpoint the trusted one. The checkpoint's last entry, if
// the response carries it (its inclusion proof checked as a label
// proof's, steps 2 and 3), is then held (docs/spec/directory.md §Held
// entry); a last entry that does not verify is a *KTProofError and
// changes nothing.
func (c *Client) UpdateCheckpoint(resp *ConsistencyResponse, now time.Time) (*tlog.Checkpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.verifier.Fork(); f != nil {
		return nil, f
	}
	cu := &resp.Checkpoint
	if cu.BaseSize != c.treeSize() {
		return nil, fmt.Errorf("%w: response from size %d, client at %d", ErrBaseSize, cu.BaseSize, c.treeSize())
	}
	trusted, trustedNote := c.verifier.Checkpoint()
	// checkLast checks the response's last entry against pv.cp.
	checkLast := func(pv *proven) error {
		l := resp.Last
		if l == nil {
			return nil
		}
		pv.entry = l.Entry
		if pv.cp.Size == 0 || l.Entry.Epoch != pv.cp.Size-1 {
			return c.fail(pv, ktErr(StepEpoch, pv, fmt.Sprintf("entry of epoch %d is not the last leaf of a tree of size %d", l.Entry.Epoch, pv.cp.Size), nil), resp)
		}
		if err := c.checkLastLeaf(pv, cu, &l.Entry, l.Inclusion); err != nil {
			return c.fail(pv, err, resp)
		}
		return nil
	}
	hold := func(cp *tlog.Checkpoint) {
		if l := resp.Last; l != nil {
			e := l.Entry
			c.held, c.heldSize, c.heldRoot = &e, cp.Size, cp.Root
		}
	}
	if len(cu.Note) == 0 || bytes.Equal(cu.Note, trustedNote) {
		if trustedNote == nil {
			return nil, ErrNoCheckpoint
		}
		if len(cu.Consistency) != 0 {
			return nil, fmt.Errorf("kt: %w: consistency proof for the trusted checkpoint", tlog.ErrBadProof)
		}
		if err := checkLast(&proven{cp: trusted, note: trustedNote}); err != nil {
			return nil, err
		}
		if err := c.checkFresh(now); err != nil {
			return nil, err
		}
		hold(trusted)
		return trusted, nil
	}
	// The last entry, against the new checkpoint, before it is accepted;
	// a smaller tree, or another root for the trusted size, is the tlog
	// Verifier's to judge.
	if resp.Last != nil {
		ncp, err := noteCheckpoint(cu.Note)
		if err != nil {
			return nil, err
		}
		if trusted == nil || ncp.Size > trusted.Size || (ncp.Size == trusted.Size && ncp.Root == trusted.Root) {
			if err := checkLast(&proven{cp: ncp, note: cu.Note, fresh: true}); err != nil {
				return nil, err
			}
		}
	}
	cp, err := c.verifier.VerifyCheckpoint(cu.Note, cu.Consistency, now)
	if err != nil {
		return nil, fmt.Errorf("kt: checkpoint: %w", err)
	}
	hold(cp)
	c.cpLogKey = nil
	c.seen = max(now.Unix(), c.seen, c.floor(), c.verifier.Time().Unix())
	return cp, nil
}
