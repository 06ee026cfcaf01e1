package tlog

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/moat-im/moat/crypto/keys"
)

// The client trust state (docs/spec/tlog.md §Client verification): the
// last checkpoint a client accepted for one log, and the rules a new one
// must pass to replace it.

// DefaultMaxSkew is the default VerifierConfig.MaxSkew.
const DefaultMaxSkew = 5 * time.Minute

// VerifierConfig is a client's policy for one log. It comes from the pinned
// trust bundle.
type VerifierConfig struct {
	// Origin is the log's origin, which is also its key name.
	Origin string
	// LogKey is the log's hybrid key; both signature lines are required.
	LogKey *keys.LogPublicKey
	// Witnesses are the configured witness keys. Keys that share a name
	// are one witness, which counts only if every one of its keys has a
	// valid cosignature: configure both an Ed25519 and an ML-DSA-44 key
	// to require both.
	Witnesses []*WitnessPublicKey
	// Quorum is the number of distinct witnesses that must cosign, at
	// least 1. More than half the witnesses makes any two quorums share a
	// witness, which then refuses a split view.
	Quorum int
	// MaxAge is how old the witnessed time of an accepted checkpoint may
	// be. The log must have the witnesses cosign more often than that,
	// even when the tree does not grow.
	MaxAge time.Duration
	// MaxSkew is how far a cosignature time may be ahead of the client's
	// clock and still count. Zero means DefaultMaxSkew.
	MaxSkew time.Duration
	// NotBefore is required: an authenticated time floor, a time the
	// client knows has passed without trusting its own clock
	// (docs/spec/tlog.md §Time floor). For a key directory client it is
	// the enrolment's floor (the enrolment code's issue time, the device
	// certificate's not_before) or at least the trust bundle's issue
	// time. The verifier's time floor starts here and rises with every
	// accepted witnessed time; it never goes back, survives MarshalState,
	// and a checkpoint witnessed before floor - MaxAge is refused whatever
	// the local clock says.
	NotBefore time.Time
}

// Verifier holds a client's trust state for one log. It is safe for
// concurrent use. Every rejected checkpoint leaves the state unchanged,
// except a proven fork, which is final: from then on every call returns
// the same *ForkError.
type Verifier struct {
	cfg       VerifierConfig
	witnesses []*WitnessPublicKey // flattened
	groups    [][]int             // indices into witnesses, one slice per witness name
	maxAge    int64               // seconds
	maxSkew   int64               // seconds

	mu    sync.Mutex
	note  []byte      // trusted signed note, nil before bootstrap
	cp    *Checkpoint // its checkpoint
	time  uint64      // its witnessed time
	seen  uint64      // high-water mark of the verifier's time T at acceptances
	floor uint64      // time floor F: NotBefore and every accepted witnessed time, never lower
	fork  *ForkError  // proven fork, final
	state verifierState
}

type verifierState uint8

const (
	stateBootstrap verifierState = iota // no checkpoint yet
	stateTracking                       // a trusted checkpoint
	stateForked                         // a proven fork: refuse everything
)

// NewVerifier returns a verifier with no trusted checkpoint. The first
// checkpoint it accepts needs a witness quorum and freshness, like every
// other, but no consistency proof.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if err := checkOrigin(cfg.Origin); err != nil {
		return nil, fmt.Errorf("tlog: verifier config: %v", err)
	}
	if cfg.LogKey == nil {
		return nil, errors.New("tlog: verifier config: no log key")
	}
	if cfg.MaxAge < time.Second {
		return nil, errors.New("tlog: verifier config: MaxAge must be at least a second")
	}
	if cfg.MaxSkew == 0 {
		cfg.MaxSkew = DefaultMaxSkew
	}
	if cfg.MaxSkew < 0 {
		return nil, errors.New("tlog: verifier config: negative MaxSkew")
	}
	if cfg.NotBefore.Unix() < 1 {
		return nil, errors.New("tlog: verifier config: NotBefore (the time floor) must be set")
	}
	v := &Verifier{
		cfg:     cfg,
		maxAge:  int64(cfg.MaxAge / time.Second),
		maxSkew: int64(cfg.MaxSkew / time.Second),
		floor:   uint64(cfg.NotBefore.Unix()),
	}
	// Witness keys must not collide with each other or with the log's two
	// lines (same key name and key ID).
	ids := verifierSet{
		{cfg.Origin, logEd25519ID(cfg.Origin, cfg.LogKey)}: nil,
		{cfg.Origin, logMLDSA65ID(cfg.Origin, cfg.LogKey)}: nil,
	}
	byName := map[string]int{}
	for _, w := range cfg.Witnesses {
		if w == nil {
			return nil, errors.New("tlog: verifier config: nil witness key")
		}
		if err := ids.add(&noteVerifier{name: w.name, id: w.id}); err != nil {
			return nil, fmt.Errorf("tlog: verifier config: %v", err)
		}
		g, ok := byName[w.name]
		if !ok {
			g = len(v.groups)
			byName[w.name] = g
			v.groups = append(v.groups, nil)
		}
		for _, j := range v.groups[g] {
			if v.witnesses[j].typ == w.typ {
				return nil, fmt.Errorf("tlog: verifier config: witness %q has two %v keys", w.name, w.typ)
			}
		}
		v.groups[g] = append(v.groups[g], len(v.witnesses))
		v.witnesses = append(v.witnesses, w)
	}
	if cfg.Quorum < 1 || cfg.Quorum > len(v.groups) {
		return nil, fmt.Errorf("tlog: verifier config: quorum %d of %d witnesses", cfg.Quorum, len(v.groups))
	}
	return v, nil
}

// VerifyCheckpoint decides whether to accept the signed checkpoint note msg
// at local time now, given a consistency proof from the trusted checkpoint
// (empty when bootstrapping or when the size is unchanged). If it accepts,
// the checkpoint becomes the trusted one and is returned. The rules, in
// order (docs/spec/tlog.md §Client verification):
//
//  1. Both log signature lines are valid, and the origin is the log's.
//  2. Same size as the trusted checkpoint but another root: a proven fork,
//     returned as a *ForkError holding both notes, and final.
//  3. At least Quorum distinct witnesses validly cosigned it, counting
//     only cosignatures no later than T + MaxSkew, where T is the
//     verifier's time: the latest of now, the time floor F, and the
//     high-water mark of T at earlier acceptances (so T never goes back).
//     If too few count because some are later, ErrFuture (the local clock
//     is probably behind). The witnessed time W is the Quorum-th newest
//     counted cosignature time.
//  4. Its size is not smaller (ErrSizeRollback); a larger size needs a
//     valid consistency proof, else a *ForkError with the proof.
//  5. W is not older than the trusted checkpoint's (ErrTimeRollback) and
//     not older than T - MaxAge (ErrStale).
//  6. The local clock is not behind signed time: now + MaxSkew ≥ max(F, W),
//     else a *ClockError (ErrClockBehind). A clock proven wrong is
//     reported, never silently replaced by the floor.
//
// On acceptance F := max(F, W).
func (v *Verifier) VerifyCheckpoint(msg []byte, proof []Hash, now time.Time) (*Checkpoint, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state == stateForked {
		return nil, v.fork.clone()
	}
	o, err := openNote(msg, v.cfg.Origin, v.cfg.LogKey, v.witnesses)
	if err != nil {
		return nil, err
	}
	c := o.c
	if err := checkEmptyRoot(c); err != nil {
		return nil, err
	}

	// 2. A proven fork needs nothing but the log's own signatures.
	if v.state == stateTracking && c.Size == v.cp.Size && c.Root != v.cp.Root {
		v.fork = &ForkError{Trusted: bytes.Clone(v.note), Conflicting: bytes.Clone(msg)}
		v.state = stateForked
		return nil, v.fork.clone()
	}

	// 3. Witness quorum, on signed time.
	t := max(now.Unix(), int64(v.seen), int64(v.floor))
	limit := satAdd(t, v.maxSkew)
	var counted []int64
	future := 0
	for _, g := range v.groups {
		wt, ok := int64(math.MaxInt64), true
		for _, i := range g {
			ts := o.cosigs[i]
			if ts == 0 { // absent, or a timestamp-less cosignature
				ok = false
				break
			}
			wt = min(wt, int64(ts))
		}
		switch {
		case !ok:
		case wt > limit:
			future++
		default:
			counted = append(counted, wt)
		}
	}
	if len(counted) < v.cfg.Quorum {
		if len(counted)+future >= v.cfg.Quorum {
			return nil, fmt.Errorf("%w: %d of %d witnesses cosigned more than %v after %v",
				ErrFuture, future, len(v.groups), v.cfg.MaxSkew, time.Unix(t, 0).UTC())
		}
		return nil, fmt.Errorf("%w: %d of the %d required", ErrNoQuorum, len(counted), v.cfg.Quorum)
	}
	slices.Sort(counted)
	w := counted[len(counted)-v.cfg.Quorum]

	// 4. Append-only.
	switch {
	case v.state == stateBootstrap || c.Size == v.cp.Size:
		if len(proof) != 0 {
			return nil, fmt.Errorf("%w: unexpected consistency proof", ErrBadProof)
		}
	case c.Size < v.cp.Size:
		return nil, fmt.Errorf("%w: size %d, trusted %d", ErrSizeRollback, c.Size, v.cp.Size)
	case v.cp.Size == 0:
		if len(proof) != 0 {
			return nil, fmt.Errorf("%w: unexpected consistency proof from the empty tree", ErrBadProof)
		}
	default:
		if err := VerifyConsistency(v.cp.Size, c.Size, proof, v.cp.Root, c.Root); err != nil {
			return nil, &ForkError{Trusted: bytes.Clone(v.note), Conflicting: bytes.Clone(msg), Proof: slices.Clone(proof)}
		}
	}

	// 5. Monotonic, fresh signed time.
	if w < int64(v.time) {
		return nil, fmt.Errorf("%w: witnessed at %v, trusted %v", ErrTimeRollback,
			time.Unix(w, 0).UTC(), time.Unix(int64(v.time), 0).UTC())
	}
	if t-w > v.maxAge {
		return nil, fmt.Errorf("%w: witnessed at %v, %ds before %v", ErrStale,
			time.Unix(w, 0).UTC(), t-w, time.Unix(t, 0).UTC())
	}

	// 6. The local clock against signed time.
	floor := max(int64(v.floor), w)
	if err := v.checkClock(now, floor); err != nil {
		return nil, err
	}

	// T ≤ W + MaxAge here, so a local clock that runs ahead moves the
	// high-water mark by at most MaxAge beyond signed time.
	v.note, v.cp, v.time, v.seen, v.floor, v.state = bytes.Clone(msg), c, uint64(w), uint64(max(t, w)), uint64(floor), stateTracking
	return c.clone(), nil
}

// checkClock returns a *ClockError if now is more than MaxSkew before the
// time floor floor (POSIX seconds).
func (v *Verifier) checkClock(now time.Time, floor int64) error {
	if satAdd(max(now.Unix(), 0), v.maxSkew) < floor {
		return &ClockError{Now: now, Floor: time.Unix(floor, 0)}
	}
	return nil
}

// CheckClock reports whether the local time now is behind the verifier's
// time floor by more than MaxSkew: a *ClockError if so, which a client
// shows as "the device clock is wrong" (docs/spec/tlog.md §Time floor).
// VerifyCheckpoint applies it before every acceptance; a client that
// reuses its trusted checkpoint without a new one applies it itself.
func (v *Verifier) CheckClock(now time.Time) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.checkClock(now, int64(v.floor))
}

// Floor returns the verifier's time floor F: the latest of NotBefore, the
// floor it was restored with, and every witnessed time it accepted. It
// never goes back.
func (v *Verifier) Floor() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return time.Unix(int64(v.floor), 0)
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// Checkpoint returns the trusted checkpoint and its signed note, or nil
// before bootstrap.
func (v *Verifier) Checkpoint() (*Checkpoint, []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cp == nil {
		return nil, nil
	}
	return v.cp.clone(), bytes.Clone(v.note)
}

// Time returns the witnessed time of the trusted checkpoint, the zero
// time before bootstrap.
func (v *Verifier) Time() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cp == nil {
		return time.Time{}
	}
	return time.Unix(int64(v.time), 0)
}

// Fork returns a copy of the proven fork evidence, or nil.
func (v *Verifier) Fork() *ForkError {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.fork == nil {
		return nil
	}
	return v.fork.clone()
}

func (e *ForkError) clone() *ForkError {
	return &ForkError{Trusted: bytes.Clone(e.Trusted), Conflicting: bytes.Clone(e.Conflicting), Proof: slices.Clone(e.Proof)}
}

func (c *Checkpoint) clone() *Checkpoint {
	cp := *c
	cp.Extensions = slices.Clone(c.Extensions)
	return &cp
}

// Repin returns a verifier for cfg that carries v's trust state: its
// trusted checkpoint, witnessed time, time high-water mark and time floor
// (the later of v's and cfg.NotBefore), for a
// client that moved to a new trust bundle of the same log (new log key,
// witnesses or quorum). The origin must not change. The carried checkpoint
// is not re-verified under cfg; the next one must be consistent with it,
// so the tree never shrinks. A forked verifier cannot be repinned.
func (v *Verifier) Repin(cfg VerifierConfig) (*Verifier, error) {
	n, err := NewVerifier(cfg)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state == stateForked {
		return nil, v.fork.clone()
	}
	if cfg.Origin != v.cfg.Origin {
		return nil, errors.New("tlog: repin: origin changed")
	}
	n.note, n.time, n.seen, n.state = bytes.Clone(v.note), v.time, v.seen, v.state
	n.floor = max(n.floor, v.floor)
	if v.cp != nil {
		n.cp = v.cp.clone()
	}
	return n, nil
}
