package tlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/moat-im/moat/crypto/keys"
)

// The witness core of C2SP tlog-witness (docs/spec/tlog.md §Witness): it
// verifies a log's checkpoint against the one it last cosigned, records it,
// and cosigns. It never cosigns a smaller tree, nor a different root at the
// same size.

// WitnessConfig configures a Witness.
type WitnessConfig struct {
	// Keys are the witness's cosigning keys: one name, an Ed25519 key
	// (required) and optionally an ML-DSA-44 key. Each add-checkpoint is
	// answered with a cosignature from every key.
	Keys []*WitnessPrivateKey
	// Logs maps each log origin the witness serves to its key. The
	// witness verifies checkpoints under the hybrid policy: both of the
	// log's signature lines are required.
	Logs map[string]*keys.LogPublicKey
	// Store persists the per-log records.
	Store WitnessStore
}

// Witness is the protocol core of a witness. It does no I/O besides its
// store. Its methods are safe for concurrent use if the store's are.
type Witness struct {
	keys  []*WitnessPrivateKey
	logs  map[string]*keys.LogPublicKey
	store WitnessStore
}

// NewWitness returns a witness.
func NewWitness(cfg WitnessConfig) (*Witness, error) {
	if len(cfg.Keys) == 0 || cfg.Store == nil {
		return nil, errors.New("tlog: witness needs keys and a store")
	}
	seen := map[CosignatureType]bool{}
	for _, k := range cfg.Keys {
		if k.pub.name != cfg.Keys[0].pub.name || seen[k.pub.typ] {
			return nil, errors.New("tlog: witness keys must share one name and differ in type")
		}
		seen[k.pub.typ] = true
	}
	if !seen[CosignatureEd25519] {
		return nil, errors.New("tlog: a Moat witness needs an Ed25519 key")
	}
	w := &Witness{keys: append([]*WitnessPrivateKey(nil), cfg.Keys...), logs: map[string]*keys.LogPublicKey{}, store: cfg.Store}
	for origin, k := range cfg.Logs {
		if err := checkOrigin(origin); err != nil || k == nil {
			return nil, fmt.Errorf("tlog: witness log %q: invalid origin or key", origin)
		}
		w.logs[origin] = k
	}
	return w, nil
}

// PublicKeys returns the witness's public keys, for clients' configuration.
func (w *Witness) PublicKeys() []*WitnessPublicKey {
	out := make([]*WitnessPublicKey, len(w.keys))
	for i, k := range w.keys {
		out[i] = k.Public()
	}
	return out
}

// maxCASAttempts bounds retries when a concurrent request updates the same
// log's record between Load and CompareAndSwap.
const maxCASAttempts = 4

// AddCheckpoint processes an add-checkpoint request at time now and returns
// the response body: one cosignature line per witness key. Errors map to
// the HTTP statuses of tlog-witness with StatusCode: ErrMalformed (400),
// ErrBadSignature (403), ErrUnknownOrigin (404), *ConflictError (409,
// Body is the response body), ErrInconsistent (422).
//
// The note must be signed by the log key in force: the configured one, or
// the one a checkpoint it cosigned announced (docs/spec/tlog.md §Log key
// rotation), which it then keeps in its record.
//
// The cosignature timestamp is now, but never earlier than the last one
// this witness gave the log, so a log's cosignature times never go back.
func (w *Witness) AddCheckpoint(ctx context.Context, req *AddCheckpointRequest, now time.Time) ([]byte, error) {
	c, err := checkpointOfNote(req.Checkpoint)
	if err != nil {
		return nil, err
	}
	if _, ok := w.logs[c.Origin]; !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownOrigin, c.Origin)
	}
	for attempt := 0; ; attempt++ {
		body, err := w.addCheckpoint(ctx, req, c.Origin, now)
		if !errors.Is(err, ErrRecordChanged) || attempt == maxCASAttempts-1 {
			return body, err
		}
	}
}

// load returns the record of origin, nil if there is none, its encoding,
// and the log key in force.
func (w *Witness) load(ctx context.Context, origin string) (*witnessRecord, []byte, *keys.LogPublicKey, error) {
	raw, err := w.store.Load(ctx, origin)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tlog: loading witness record: %w", err)
	}
	key := w.logs[origin]
	if raw == nil {
		return nil, nil, key, nil
	}
	rec, err := parseWitnessRecord(raw)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tlog: stored witness record: %v", err) // 500, not the client's fault
	}
	if rec.logKey != nil {
		key = rec.logKey
	}
	return rec, raw, key, nil
}

func (w *Witness) addCheckpoint(ctx context.Context, req *AddCheckpointRequest, origin string, now time.Time) ([]byte, error) {
	stored, oldRaw, key, err := w.load(ctx, origin)
	if err != nil {
		return nil, err
	}
	o, key, err := openForRecord(req.Checkpoint, origin, key, stored)
	if err != nil {
		return nil, err
	}
	c := o.c
	if req.OldSize > c.Size {
		return nil, fmt.Errorf("%w: old size %d > checkpoint size %d", ErrMalformed, req.OldSize, c.Size)
	}
	rec := stored
	if rec == nil {
		rec = &witnessRecord{root: EmptyRoot}
	}
	// The checks of tlog-witness §add-checkpoint, in its order.
	if req.OldSize != rec.size {
		return nil, &ConflictError{Size: rec.size}
	}
	if c.Size == 0 && c.Root != EmptyRoot {
		return nil, fmt.Errorf("%w: empty tree with a non-empty root", ErrInconsistent)
	}
	switch {
	case req.OldSize == 0:
		if len(req.Proof) != 0 {
			return nil, fmt.Errorf("%w: proof from size 0 must be empty", ErrInconsistent)
		}
	case req.OldSize == c.Size:
		if c.Root != rec.root {
			// A split view: the log signed two trees of this size.
			return nil, fmt.Errorf("%w: size %d already cosigned with another root", ErrInconsistent, c.Size)
		}
		if len(req.Proof) != 0 {
			return nil, fmt.Errorf("%w: proof between equal sizes must be empty", ErrInconsistent)
		}
	default:
		if err := VerifyConsistency(req.OldSize, c.Size, req.Proof, rec.root, c.Root); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInconsistent, err)
		}
	}
	if err := checkAnnouncement(c, key, stored); err != nil {
		return nil, err
	}

	ts := rec.time
	if t := now.Unix(); t > 0 && uint64(t) > ts {
		ts = uint64(t)
	}
	if ts == 0 || ts > MaxTreeSize {
		return nil, errors.New("tlog: witness clock is before 1970")
	}
	var lines []byte
	for _, k := range w.keys {
		cs, err := cosign(k, c, ts)
		if err != nil {
			return nil, err
		}
		l, err := cs.Marshal()
		if err != nil {
			return nil, err
		}
		lines = append(lines, l...)
	}
	// The monitoring checkpoint: the note text, the log's signature lines
	// this witness verified, and its own cosignatures.
	cp := make([]byte, 0, len(o.text)+1+len(o.logSigs)+len(lines))
	cp = append(append(append(append(cp, o.text...), '\n'), o.logSigs...), lines...)
	nr := &witnessRecord{size: c.Size, root: c.Root, time: ts, checkpoint: cp}
	if !key.Equal(w.logs[origin]) {
		nr.logKey = key
	}
	newRaw, err := nr.marshal()
	if err != nil {
		return nil, err
	}
	if err := w.store.CompareAndSwap(ctx, origin, oldRaw, newRaw); err != nil {
		return nil, fmt.Errorf("tlog: storing witness record: %w", err)
	}
	return lines, nil
}

// Checkpoint returns the latest checkpoint the witness cosigned for origin,
// with the log's signatures and its own cosignatures, for the monitoring
// endpoint GET <prefix>/<origin hash>/checkpoint. It returns an error
// wrapping ErrUnknownOrigin (404) if there is none.
func (w *Witness) Checkpoint(ctx context.Context, origin string) ([]byte, error) {
	if _, ok := w.logs[origin]; !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownOrigin, origin)
	}
	raw, err := w.store.Load(ctx, origin)
	if err != nil {
		return nil, fmt.Errorf("tlog: loading witness record: %w", err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: %q has no cosigned checkpoint", ErrUnknownOrigin, origin)
	}
	rec, err := parseWitnessRecord(raw)
	if err != nil {
		return nil, fmt.Errorf("tlog: stored witness record: %v", err)
	}
	return rec.checkpoint, nil
}

// LogKey returns the key the witness requires of origin's checkpoints now:
// the configured one, or the last one a cosigned checkpoint announced
// (docs/spec/tlog.md §Log key rotation). The key a checkpoint announced
// is in force once the witness cosigns a checkpoint signed by it.
func (w *Witness) LogKey(ctx context.Context, origin string) (*keys.LogPublicKey, error) {
	if _, ok := w.logs[origin]; !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownOrigin, origin)
	}
	_, _, key, err := w.load(ctx, origin)
	return key, err
}

// StatusCode maps an error of Witness.AddCheckpoint or ParseAddCheckpointRequest
// to the HTTP status code tlog-witness prescribes, 200 for nil and 500 for
// anything else (such as a store failure). It returns plain numbers so that
// the package need not import net/http.
func StatusCode(err error) int {
	var conflict *ConflictError
	switch {
	case err == nil:
		return 200
	case errors.As(err, &conflict):
		return 409 // Conflict
	case errors.Is(err, ErrUnknownOrigin):
		return 404 // Not Found
	case errors.Is(err, ErrBadSignature):
		return 403 // Forbidden
	case errors.Is(err, ErrInconsistent):
		return 422 // Unprocessable Entity
	case errors.Is(err, ErrMalformed):
		return 400 // Bad Request
	}
	return 500
}
