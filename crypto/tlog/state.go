package tlog

import (
	"bytes"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Trust state encoding (docs/spec/tlog.md §Trust state):
//
//	struct {
//	    opaque label[24] = "moat/v1/tlog/trust-state";
//	    uint64 time;                    /* witnessed time of the checkpoint */
//	    uint64 seen;                    /* high-water mark of the verifier's time */
//	    opaque checkpoint<0..2^24-1>;   /* trusted signed note; empty before bootstrap */
//	    opaque fork<0..2^24-1>;         /* conflicting note of a proven fork, or empty */
//	} TrustState;

type trustState struct {
	time       uint64
	seen       uint64
	checkpoint []byte
	fork       []byte
}

func (s *trustState) marshal() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddBytes([]byte(labelTrustState))
	b.AddUint64(s.time)
	b.AddUint64(s.seen)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.checkpoint) })
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.fork) })
	return b.Bytes()
}

// parseTrustState decodes the encoding strictly, without verifying the
// notes: the label, no trailing bytes, time ≤ seen ≤ 2^63-1, notes at most
// MaxNoteSize, times 0 and no fork before bootstrap.
func parseTrustState(b []byte) (*trustState, error) {
	s := cryptobyte.String(b)
	var label []byte
	var cp, fork cryptobyte.String
	st := &trustState{}
	if !s.ReadBytes(&label, len(labelTrustState)) || string(label) != labelTrustState ||
		!s.ReadUint64(&st.time) || !s.ReadUint64(&st.seen) || !s.ReadUint24LengthPrefixed(&cp) ||
		!s.ReadUint24LengthPrefixed(&fork) || !s.Empty() {
		return nil, fmt.Errorf("%w: trust state: bad encoding", ErrMalformed)
	}
	if st.time > MaxTreeSize || st.seen > MaxTreeSize || st.seen < st.time ||
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
	st := &trustState{time: v.time, seen: v.seen, checkpoint: v.note}
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
// does not invalidate the state.
func RestoreVerifier(cfg VerifierConfig, state []byte) (*Verifier, error) {
	v, err := NewVerifier(cfg)
	if err != nil {
		return nil, err
	}
	st, err := parseTrustState(state)
	if err != nil {
		return nil, err
	}
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
