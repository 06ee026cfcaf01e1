package tlog

import (
	"bytes"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Trust state encoding (docs/spec/tlog.md §Trust state):
//
//	struct {
//	    opaque label[27] = "moat/v1/tlog/verifier-state";
//	    uint64 floor;                   /* time floor F, ≥ 1 */
//	    uint64 time;                    /* witnessed time of the checkpoint */
//	    uint64 seen;                    /* high-water mark of the verifier's time */
//	    opaque checkpoint<0..2^24-1>;   /* trusted signed note; empty before bootstrap */
//	    opaque fork<0..2^24-1>;         /* conflicting note of a proven fork, or empty */
//	} TrustState;
//
// The earlier encoding, labelled "moat/v1/tlog/trust-state" and without
// the floor, is still read (its floor is its time) and never written.

type trustState struct {
	legacy     bool // the encoding without a floor
	floor      uint64
	time       uint64
	seen       uint64
	checkpoint []byte
	fork       []byte
}

func (s *trustState) marshal() ([]byte, error) {
	var b cryptobyte.Builder
	if s.legacy {
		b.AddBytes([]byte(labelTrustState))
	} else {
		b.AddBytes([]byte(labelVerifierState))
		b.AddUint64(s.floor)
	}
	b.AddUint64(s.time)
	b.AddUint64(s.seen)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.checkpoint) })
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.fork) })
	return b.Bytes()
}

// parseTrustState decodes either encoding strictly, without verifying the
// notes: a label, no trailing bytes, time ≤ seen ≤ 2^63-1, time ≤ floor ≤
// 2^63-1 and floor ≥ 1, notes at most MaxNoteSize, time and seen 0 and no
// fork before bootstrap. A legacy state's floor is its time.
func parseTrustState(b []byte) (*trustState, error) {
	s := cryptobyte.String(b)
	var cp, fork cryptobyte.String
	st := &trustState{}
	switch {
	case bytes.HasPrefix(b, []byte(labelVerifierState)):
		s.Skip(len(labelVerifierState))
		if !s.ReadUint64(&st.floor) {
			return nil, fmt.Errorf("%w: trust state: bad encoding", ErrMalformed)
		}
	case bytes.HasPrefix(b, []byte(labelTrustState)):
		s.Skip(len(labelTrustState))
		st.legacy = true
	default:
		return nil, fmt.Errorf("%w: trust state: bad label", ErrMalformed)
	}
	if !s.ReadUint64(&st.time) || !s.ReadUint64(&st.seen) || !s.ReadUint24LengthPrefixed(&cp) ||
		!s.ReadUint24LengthPrefixed(&fork) || !s.Empty() {
		return nil, fmt.Errorf("%w: trust state: bad encoding", ErrMalformed)
	}
	if st.legacy {
		st.floor = st.time
	} else if st.floor < 1 || st.floor < st.time {
		return nil, fmt.Errorf("%w: trust state: floor out of range", ErrMalformed)
	}
	if st.time > MaxTreeSize || st.seen > MaxTreeSize || st.floor > MaxTreeSize || st.seen < st.time ||
		len(cp) > MaxNoteSize || len(fork) > MaxNoteSize {
		return nil, fmt.Errorf("%w: trust state: out of range", ErrMalformed)
	}
	if len(cp) == 0 && (st.time != 0 || st.seen != 0 || len(fork) != 0) {
		return nil, fmt.Errorf("%w: trust state: time or fork without a checkpoint", ErrMalformed)
	}
	if len(cp) > 0 {
		st.checkpoint = bytes.Clone(cp)
	}
	if len(fork) > 0 {
		st.fork = bytes.Clone(fork)
	}
	return st, nil
}

// MarshalState returns the trust state, for the client to persist after
// every accepted checkpoint. It holds only public, signed data, but its
// integrity matters: an attacker who can rewrite it can roll the client
// back.
func (v *Verifier) MarshalState() ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := &trustState{floor: v.floor, time: v.time, seen: v.seen, checkpoint: v.note}
	if v.fork != nil {
		st.fork = v.fork.Conflicting
	}
	return st.marshal()
}

// RestoreVerifier returns a verifier for cfg with a trust state from
// MarshalState. Parsing is strict, and the notes must open under cfg's log
// key and origin, with the hybrid policy; a fork must be proven (same size,
// different roots). The witnessed time is taken from the state as is, and
// cosignatures are not re-verified, so that a change of witnesses in cfg
// does not invalidate the state. The time floor is the later of the
// state's and cfg.NotBefore: it never goes back.
func RestoreVerifier(cfg VerifierConfig, state []byte) (*Verifier, error) {
	v, err := NewVerifier(cfg)
	if err != nil {
		return nil, err
	}
	st, err := parseTrustState(state)
	if err != nil {
		return nil, err
	}
	v.floor = max(v.floor, st.floor)
	if st.checkpoint == nil {
		return v, nil
	}
	o, err := openNote(st.checkpoint, cfg.Origin, cfg.LogKey, nil)
	if err != nil {
		return nil, fmt.Errorf("tlog: trust state checkpoint: %w", err)
	}
	if err := checkEmptyRoot(o.c); err != nil {
		return nil, err
	}
	v.note, v.cp, v.time, v.seen, v.state = st.checkpoint, o.c, st.time, st.seen, stateTracking
	if st.fork != nil {
		f, err := openNote(st.fork, cfg.Origin, cfg.LogKey, nil)
		if err != nil {
			return nil, fmt.Errorf("tlog: trust state fork: %w", err)
		}
		if f.c.Size != o.c.Size || f.c.Root == o.c.Root {
			return nil, fmt.Errorf("%w: trust state fork is not a proven fork", ErrMalformed)
		}
		v.fork = &ForkError{Trusted: st.checkpoint, Conflicting: st.fork}
		v.state = stateForked
	}
	return v, nil
}
