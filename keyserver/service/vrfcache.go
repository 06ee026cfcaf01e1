package service

import (
	"context"
	"crypto/sha256"
	"log/slog"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/vmap"
)

// The VRF output cache (docs/spec/directory.md §Storage, VRF outputs):
// a label's VRF output and proof never change for one VRF key, and cost
// about 220 µs to evaluate. The tenant caches them in memory (vrfCache)
// and in the store (store.VRFCacheStore): under the VRF key's id, the
// SHA-256 of the input, the label and the proof. The first epochs after a
// restart read the outputs of their labels in one batch (warmLabels)
// instead of evaluating them again; outputs evaluated since the last
// epoch are written after the next one (saveLabels), without a sync: a
// crash only costs their evaluation again.

// vrfKeyID is the store's id of a VRF key.
func vrfKeyID(t *Tenant) [32]byte {
	h := sha256.New()
	h.Write([]byte("moat/v1/directory-service/vrf-outputs\x00"))
	h.Write(t.keys.VRF.Public().Bytes())
	return [32]byte(h.Sum(nil))
}

// vrfProofSize is the size of an ECVRF-EDWARDS25519-SHA512-TAI proof.
const vrfProofSize = 80

// maxUnsaved bounds the outputs evaluated and not yet written.
const maxUnsaved = 1 << 20

func encodeVRFOutput(o vrfOutput) []byte {
	return append(append(make([]byte, 0, len(o.label)+len(o.proof)), o.label[:]...), o.proof...)
}

// decodeVRFOutput decodes a stored output; false if it is not one.
func decodeVRFOutput(b []byte) (vrfOutput, bool) {
	if len(b) != len(vmap.Label{})+vrfProofSize {
		return vrfOutput{}, false
	}
	return vrfOutput{label: vmap.Label(b[:32]), proof: append([]byte{}, b[32:]...)}, true
}

// cacheLabel keeps o as alpha's output in memory. vrfMu is held.
func (t *Tenant) cacheLabel(alpha []byte, o vrfOutput) {
	if len(t.vrfCache) >= t.opts.VRFCache {
		clear(t.vrfCache)
	}
	t.vrfCache[string(alpha)] = o
}

// storedLabel reads alpha's output from the store.
func (t *Tenant) storedLabel(alpha []byte) (vrfOutput, bool) {
	var out vrfOutput
	found := false
	err := t.st.GetVRFOutputs(context.Background(), t.vrfID, [][32]byte{sha256.Sum256(alpha)}, func(_ int, b []byte) {
		out, found = decodeVRFOutput(b)
	})
	return out, err == nil && found
}

// storedOrEvaluated returns alpha's output, not in the memory cache,
// from the store or else evaluated, and caches it in memory; evaluated
// reports which.
func (t *Tenant) storedOrEvaluated(alpha []byte) (o vrfOutput, evaluated bool) {
	o, stored := t.storedLabel(alpha)
	if !stored {
		o.label, o.proof = kt.EvaluateLabel(t.keys.VRF, alpha)
		t.met.vrfEvals.WithLabelValues(t.id.String()).Inc()
	}
	t.vrfMu.Lock()
	t.cacheLabel(alpha, o)
	t.vrfMu.Unlock()
	return o, !stored
}

// publishedLabel is label for a label an epoch writes: an output it
// evaluates is written to the store after the epoch (saveLabels). Only
// those are: a lookup of a user who does not exist evaluates one too,
// and must not make the store grow.
func (t *Tenant) publishedLabel(alpha []byte) vmap.Label {
	t.vrfMu.Lock()
	o, ok := t.vrfCache[string(alpha)]
	t.vrfMu.Unlock()
	if ok {
		return o.label
	}
	o, evaluated := t.storedOrEvaluated(alpha)
	if evaluated {
		t.unsaved(alpha, o)
	}
	return o.label
}

// unsaved queues alpha's evaluated output for saveLabels.
func (t *Tenant) unsaved(alpha []byte, o vrfOutput) {
	t.vrfMu.Lock()
	if len(t.vrfUnsaved) < maxUnsaved {
		t.vrfUnsaved = append(t.vrfUnsaved, store.VRFOutput{Input: sha256.Sum256(alpha), Output: encodeVRFOutput(o)})
	}
	t.vrfMu.Unlock()
}

// saveLabel writes alpha's evaluated output now, best effort.
func (t *Tenant) saveLabel(alpha []byte, o vrfOutput) {
	out := []store.VRFOutput{{Input: sha256.Sum256(alpha), Output: encodeVRFOutput(o)}}
	if err := t.st.PutVRFOutputs(context.Background(), t.vrfID, out); err != nil {
		t.log.Warn("writing a VRF output to the store", slog.Any("err", err))
	}
}

// fixedOrgLabel reports whether alpha is the input of one of the org
// labels every tenant has or may have (not a policy: those are written
// when published), whose outputs are kept as soon as evaluated, even
// while the label is absent (every lookup proves ca-rotation, usually
// absent).
func (t *Tenant) fixedOrgLabel(alpha []byte) bool {
	for _, name := range []string{org.OrgLabelTrustBundle, org.OrgLabelAdminRoster, org.OrgLabelCARotation, org.OrgLabelOrgChart, org.OrgLabelEscrowPolicy} {
		if a, err := kt.OrgAlpha(t.id, name); err == nil && string(a) == string(alpha) {
			return true
		}
	}
	return false
}

// warmLabels reads from the store, in one batch, the outputs of the
// labels of ups that the memory cache does not hold.
func (t *Tenant) warmLabels(ctx context.Context, ups []org.Update) {
	var alphas [][]byte
	t.vrfMu.Lock()
	for _, u := range ups {
		alpha, err := kt.Alpha(t.id, u.Label)
		if err != nil {
			continue // commit reports it
		}
		if _, ok := t.vrfCache[string(alpha)]; !ok {
			alphas = append(alphas, alpha)
		}
	}
	t.vrfMu.Unlock()
	if len(alphas) == 0 {
		return
	}
	for len(alphas) > 0 {
		n := min(len(alphas), store.MaxVRFOutputs)
		batch := alphas[:n]
		alphas = alphas[n:]
		inputs := make([][32]byte, len(batch))
		for i, a := range batch {
			inputs[i] = sha256.Sum256(a)
		}
		found := make([]vrfOutput, len(batch))
		ok := make([]bool, len(batch))
		err := t.st.GetVRFOutputs(ctx, t.vrfID, inputs, func(i int, b []byte) {
			found[i], ok[i] = decodeVRFOutput(b)
		})
		if err != nil {
			t.log.Warn("reading cached VRF outputs; evaluating them", slog.Any("err", err))
			return
		}
		t.vrfMu.Lock()
		for i, a := range batch {
			if ok[i] {
				t.cacheLabel(a, found[i])
			}
		}
		t.vrfMu.Unlock()
	}
}

// saveLabels writes the outputs evaluated since the last call, best
// effort.
func (t *Tenant) saveLabels(ctx context.Context) {
	t.vrfMu.Lock()
	outs := t.vrfUnsaved
	t.vrfUnsaved = nil
	t.vrfMu.Unlock()
	if len(outs) == 0 {
		return
	}
	if err := t.st.PutVRFOutputs(ctx, t.vrfID, outs); err != nil {
		t.log.Warn("writing VRF outputs to the store", slog.Int("outputs", len(outs)), slog.Any("err", err))
	}
}
