package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/store"
)

// WitnessClient submits checkpoints to one witness (C2SP tlog-witness
// add-checkpoint, docs/spec/tlog.md §Witness). AddCheckpoint returns the
// cosignature lines of a 200 response; a 409 as a *tlog.ConflictError
// holding the witness's size; any other refusal as a *WitnessError.
type WitnessClient interface {
	// Name identifies the witness in logs and metrics.
	Name() string
	AddCheckpoint(ctx context.Context, req *tlog.AddCheckpointRequest) ([]byte, error)
}

// WitnessError is a witness's refusal other than 409.
type WitnessError struct {
	Witness string
	Status  int // the HTTP status
	Message string
}

func (e *WitnessError) Error() string {
	return fmt.Sprintf("service: witness %s: status %d: %s", e.Witness, e.Status, e.Message)
}

// maxWitnessResponse bounds a witness's response body: a few cosignature
// lines (an ML-DSA-44 line is about 3.3 KB).
const maxWitnessResponse = 64 << 10

// HTTPWitness is a WitnessClient for a witness reached over HTTP(S) at
// URL, with POST URL/add-checkpoint.
type HTTPWitness struct {
	url    string
	name   string
	client *http.Client
}

// NewHTTPWitness returns a client of the witness at base (http or https
// URL, optionally with a path prefix). client may be nil for a default
// client; each request's time is bounded by the context the caller gives.
func NewHTTPWitness(base string, client *http.Client) (*HTTPWitness, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("service: witness URL %q: want http(s)://host[/prefix]", base)
	}
	if client == nil {
		client = &http.Client{}
	}
	return &HTTPWitness{url: strings.TrimSuffix(u.String(), "/"), name: u.Host, client: client}, nil
}

// Name returns the witness's host.
func (w *HTTPWitness) Name() string { return w.name }

// AddCheckpoint implements WitnessClient.
func (w *HTTPWitness) AddCheckpoint(ctx context.Context, req *tlog.AddCheckpointRequest) ([]byte, error) {
	body, err := req.Marshal()
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url+"/add-checkpoint", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := w.client.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxWitnessResponse+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxWitnessResponse {
		return nil, &WitnessError{Witness: w.name, Status: resp.StatusCode, Message: "response too large"}
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return b, nil
	case http.StatusConflict:
		size, err := tlog.ParseConflictBody(b)
		if err != nil {
			return nil, &WitnessError{Witness: w.name, Status: resp.StatusCode, Message: "malformed conflict body"}
		}
		return nil, &tlog.ConflictError{Size: size}
	}
	msg := strings.TrimSpace(string(b))
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return nil, &WitnessError{Witness: w.name, Status: resp.StatusCode, Message: msg}
}

// LocalWitness is a WitnessClient for a tlog.Witness in the same process
// (the dev mode's witness, and tests).
type LocalWitness struct {
	W     *tlog.Witness
	ID    string
	Clock func() time.Time // time.Now if nil
}

// Name implements WitnessClient.
func (w *LocalWitness) Name() string { return w.ID }

// AddCheckpoint implements WitnessClient.
func (w *LocalWitness) AddCheckpoint(ctx context.Context, req *tlog.AddCheckpointRequest) ([]byte, error) {
	now := time.Now
	if w.Clock != nil {
		now = w.Clock
	}
	b, err := w.W.AddCheckpoint(ctx, req, now())
	if err == nil {
		return b, nil
	}
	if ce, ok := errors.AsType[*tlog.ConflictError](err); ok {
		return nil, ce
	}
	return nil, &WitnessError{Witness: w.ID, Status: tlog.StatusCode(err), Message: err.Error()}
}

// cosigner asks a tenant's witnesses to cosign its latest checkpoint and
// serves it once a quorum has. One round runs at a time.
type cosigner struct {
	t  *Tenant
	mu sync.Mutex
	ws []*witnessState
	// The checkpoint being cosigned.
	size   uint64
	signed []byte
	last   time.Time // end of the last round that reached a quorum
	// warned is the trust bundle sequence for which missing witness URLs
	// were last reported.
	warned uint64
}

type witnessState struct {
	c     WitnessClient
	known uint64 // the size it last cosigned, as far as the log knows
	lines []byte // its cosignature lines for the checkpoint being cosigned
	// names are the witness key names it has cosigned as; nil until it
	// first cosigns. The client configuration gives URLs only, so which
	// witness of a trust bundle a URL serves is learnt from its answers.
	names map[string]bool
}

// serves reports whether w is (or may be, not having answered yet) one of
// the witnesses of set.
func (w *witnessState) serves(set map[string]bool) bool {
	if w.names == nil {
		return true
	}
	for n := range w.names {
		if set[n] {
			return true
		}
	}
	return false
}

func newCosigner(t *Tenant, ws []WitnessClient) *cosigner {
	c := &cosigner{t: t}
	guess := uint64(0)
	if s := t.served.Load(); s != nil {
		guess = s.size
	} else if h := t.head.Load(); h != nil && h.LogSize > 0 {
		guess = h.LogSize - 1
	}
	for _, w := range ws {
		// A wrong guess costs one 409 round trip.
		c.ws = append(c.ws, &witnessState{c: w, known: guess})
	}
	return c
}

// round submits the committed head's checkpoint to every witness (again,
// for fresh cosignatures, if it is the one already cosigned), then serves
// it if a quorum cosigned. It returns the served size.
func (c *cosigner) round(ctx context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	head := t.head.Load()
	if head == nil {
		return 0, errNotServing
	}
	if head.LogSize != c.size {
		// The stored head may carry cosignatures already (a restart):
		// witnesses are sent the log's signatures only.
		c.size, c.signed = head.LogSize, logSignedOnly(head.Checkpoint, t.origin)
		for _, w := range c.ws {
			w.lines = nil
		}
	}
	// The witnesses of the bundle this checkpoint is under: the one
	// before a new bundle for the epoch publishing it, the new one after
	// (docs/spec/directory.md §Trust bundle changes). Configured witnesses
	// known to be of neither are not asked.
	ti := t.trust.Load().checkpointTrust(c.size)
	set := map[string]bool{}
	for _, k := range ti.bundle.Witnesses.Witnesses {
		set[k.Name] = true
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.ws))
	for i, w := range c.ws {
		if !w.serves(set) {
			w.lines = nil
			continue
		}
		wg.Go(func() {
			lines, err := c.submit(ctx, w)
			if err == nil {
				w.lines = lines
			}
			errs[i] = err
		})
	}
	wg.Wait()
	c.warnMissing(ti.bundle, set)
	note := bytes.Clone(c.signed)
	for _, w := range c.ws {
		if w.lines == nil || !w.serves(set) {
			continue
		}
		n, err := tlog.AddCosignatures(note, w.lines)
		if err != nil {
			t.log.Warn("ignoring malformed cosignatures", slog.String("witness", w.c.Name()), slog.Any("err", err))
			w.lines = nil
			continue
		}
		note = n
	}
	err := t.acceptNote(ctx, note)
	if err != nil {
		err = fmt.Errorf("service: checkpoint of size %d not served: %w", c.size, errors.Join(append([]error{err}, errs...)...))
		t.log.Warn("checkpoint not cosigned by a witness quorum", slog.Uint64("size", c.size), slog.Any("err", err))
	} else {
		c.last = t.now()
		// The head keeps the cosigned note, so that it is served at once
		// after a restart; a head that moved on meanwhile keeps its own.
		if werr := t.st.UpdateHeadCheckpoint(ctx, c.size-1, note); werr != nil && !errors.Is(werr, store.ErrConflict) {
			t.log.Error("storing the cosigned checkpoint", slog.Any("err", werr))
		} else if werr == nil {
			t.transitionCosigned(c.size, note)
		}
	}
	if sv := t.served.Load(); sv != nil {
		return sv.size, err
	}
	return 0, err
}

// warnMissing logs, once per trust bundle, the witnesses of set that no
// configured witness URL has cosigned as: the operator must configure
// their URLs (moatd --witness) or the checkpoints under that bundle may
// not reach its quorum. The service keeps going with the others.
func (c *cosigner) warnMissing(b *org.TrustBundle, set map[string]bool) {
	if c.warned == b.Sequence+1 {
		return
	}
	served := map[string]bool{}
	unknown := 0
	for _, w := range c.ws {
		if w.names == nil {
			unknown++
		}
		for n := range w.names {
			served[n] = true
		}
	}
	var missing []string
	for _, k := range b.Witnesses.Witnesses {
		if !served[k.Name] {
			missing = append(missing, k.Name)
		}
	}
	if len(missing) == 0 {
		c.warned = b.Sequence + 1
		return
	}
	if unknown > 0 {
		// Some URL has not answered yet and may be one of them; the
		// warning waits until every URL has, or the quorum is missed.
		if len(set)-len(missing) >= b.Witnesses.Quorum {
			return
		}
	}
	c.warned = b.Sequence + 1
	c.t.log.Warn("WITNESS URL MISSING: the trust bundle names witnesses that no configured witness URL cosigns as; configure their URLs",
		slog.Uint64("bundle_sequence", b.Sequence), slog.Any("witnesses", missing),
		slog.Int("quorum", b.Witnesses.Quorum), slog.Int("configured", len(c.ws)))
}

// lastCosigned returns when a round last reached a quorum.
func (c *cosigner) lastCosigned() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// submit asks one witness to cosign c.signed. A witness that refuses its
// signature (403) and last cosigned a checkpoint before an announcement
// of a new log key missed it: the announcing checkpoints are submitted to
// it first, in order, then c.signed again (docs/spec/tlog.md §Log key
// rotation).
func (c *cosigner) submit(ctx context.Context, w *witnessState) ([]byte, error) {
	lines, err := c.submitNote(ctx, w, c.signed, c.size, false)
	we, isWE := errors.AsType[*WitnessError](err)
	if !isWE || we.Status != http.StatusForbidden {
		return lines, err
	}
	caught := false
	for _, tr := range c.t.loadedTransitions() {
		if tr.size <= w.known || tr.size >= c.size || !announcesKey(tr.note) {
			continue
		}
		c.t.log.Info("witness refuses the checkpoint's signature; submitting the log key announcement it missed",
			slog.String("witness", w.c.Name()), slog.Uint64("witnessed_size", w.known), slog.Uint64("announcement_size", tr.size))
		if _, terr := c.submitNote(ctx, w, logSignedOnly(tr.note, c.t.origin), tr.size, true); terr != nil {
			break
		}
		caught = true
	}
	if !caught {
		return lines, err
	}
	return c.submitNote(ctx, w, c.signed, c.size, false)
}

// submitNote asks one witness to cosign note, the checkpoint of size,
// with a consistency proof from the size it last cosigned. A 409 tells
// that size: the request is made again from it. A 422 means the witness
// holds a checkpoint of this log that the log's tree does not extend: an
// alarm. Other failures are retried with exponential backoff. For a
// catch-up (an older checkpoint than the log's), a witness ahead of it is
// no alarm.
func (c *cosigner) submitNote(ctx context.Context, w *witnessState, note []byte, size uint64, catchUp bool) ([]byte, error) {
	t, o := c.t, c.t.opts
	tid, name := t.id.String(), w.c.Name()
	backoff := o.WitnessBackoff
	conflicts := 0
	var lastErr error
	for attempt := 0; attempt < o.WitnessAttempts; {
		if w.known > size && catchUp {
			return nil, fmt.Errorf("service: witness %s is at size %d, past the announcement at %d", name, w.known, size)
		}
		if w.known > size {
			t.met.witnessAlarms.WithLabelValues(tid, name, "larger").Inc()
			t.log.Error("ALARM: witness has cosigned a larger tree of this log than the log has: the log lost epochs, or its key signed another tree",
				slog.String("witness", name), slog.Uint64("witnessed_size", w.known), slog.Uint64("log_size", size))
			return nil, fmt.Errorf("service: witness %s has cosigned size %d, above the log's %d", name, w.known, size)
		}
		proof, err := t.tree.Load().ConsistencyProof(ctx, w.known, size)
		if err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, o.WitnessTimeout)
		lines, err := w.c.AddCheckpoint(rctx, &tlog.AddCheckpointRequest{OldSize: w.known, Proof: proof, Checkpoint: note})
		cancel()
		if err == nil {
			if css, perr := tlog.ParseCosignatures(lines); perr != nil {
				err = &WitnessError{Witness: name, Status: http.StatusOK, Message: "malformed cosignatures"}
			} else {
				t.met.witnessReqs.WithLabelValues(tid, name, "ok").Inc()
				if len(css) > 0 {
					w.names = map[string]bool{}
					for _, cs := range css {
						w.names[cs.Name] = true
					}
				}
				w.known = size
				return lines, nil
			}
		}
		lastErr = err
		if ce, ok := errors.AsType[*tlog.ConflictError](err); ok {
			t.met.witnessReqs.WithLabelValues(tid, name, "conflict").Inc()
			if ce.Size <= size {
				t.log.Info("witness is at another size; asking again", slog.String("witness", name),
					slog.Uint64("witnessed_size", ce.Size), slog.Uint64("old_size", w.known))
			}
			w.known = ce.Size // above size: the alarm at the top of the loop
			if conflicts++; conflicts > 2 {
				return nil, err
			}
			continue
		}
		if we, ok := errors.AsType[*WitnessError](err); ok && we.Status == http.StatusUnprocessableEntity {
			t.met.witnessReqs.WithLabelValues(tid, name, "inconsistent").Inc()
			t.met.witnessAlarms.WithLabelValues(tid, name, "inconsistent").Inc()
			t.log.Error("ALARM: witness refuses the checkpoint as inconsistent with one it cosigned (422): a fork of this log, or the log lost epochs",
				slog.String("witness", name), slog.Uint64("old_size", w.known), slog.Uint64("size", size),
				slog.String("checkpoint", string(note)), slog.String("reason", we.Message))
			return nil, err
		}
		result := "error"
		if _, ok := errors.AsType[*WitnessError](err); ok {
			result = "refused"
		}
		t.met.witnessReqs.WithLabelValues(tid, name, result).Inc()
		attempt++
		if attempt >= o.WitnessAttempts {
			break
		}
		t.log.Warn("witness request failed; retrying", slog.String("witness", name), slog.Int("attempt", attempt),
			slog.Duration("backoff", backoff), slog.Any("err", err))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, o.WitnessMaxBackoff)
	}
	t.log.Warn("witness did not cosign", slog.String("witness", name), slog.Any("err", lastErr))
	return nil, lastErr
}
