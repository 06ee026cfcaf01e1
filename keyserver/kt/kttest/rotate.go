package kttest

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// approvals returns the approvals of the proposed bundle p by the first
// Threshold admins.
func (d *Directory) approvals(p *org.TrustBundle) ([]*org.Approval, error) {
	var out []*org.Approval
	for _, k := range d.Admins[:d.Tenant.Roster().Threshold] {
		a, err := org.ApproveTrustBundle(k, p)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// RotateCA rotates the tenant's CA to a new key (org.Tenant.RotateCA,
// with the approval of Threshold admins). The next PublishEpoch publishes
// the rotation and the new bundle.
func (d *Directory) RotateCA(now time.Time) (*org.CARotationResult, error) {
	next, err := org.GenerateMemorySigner(d.Rand)
	if err != nil {
		return nil, err
	}
	p, err := d.Tenant.ProposeCA(next.Public(), now)
	if err != nil {
		return nil, err
	}
	as, err := d.approvals(p)
	if err != nil {
		return nil, err
	}
	res, err := d.Tenant.RotateCA(p, as, next, now)
	if err != nil {
		return nil, err
	}
	d.CA = next
	return res, nil
}

// RotateLogKey replaces the log key, with the approval of Threshold
// admins. The next PublishEpoch publishes the new bundle in a checkpoint
// signed by the old key that announces the new one (docs/spec/tlog.md
// §Log key rotation); later checkpoints are signed by the new key, and
// the witnesses follow.
func (d *Directory) RotateLogKey(now time.Time) (*org.TrustBundle, error) {
	next, err := keys.GenerateLogKey(d.Rand)
	if err != nil {
		return nil, err
	}
	p, err := d.Tenant.ProposeLogKey(next.Public(), now)
	if err != nil {
		return nil, err
	}
	as, err := d.approvals(p)
	if err != nil {
		return nil, err
	}
	nb, err := d.Tenant.RotateLogKey(p, as)
	if err != nil {
		return nil, err
	}
	d.pendingLog = next
	return nb, nil
}

// ReplaceWitnesses replaces the witnesses by n new Ed25519-and-ML-DSA
// witnesses with quorum q, with the approval of Threshold admins. The
// next PublishEpoch is cosigned by the old witnesses; later ones by the
// new.
func (d *Directory) ReplaceWitnesses(n, q int, now time.Time) (*org.TrustBundle, error) {
	ws := org.WitnessSet{Quorum: q}
	var all [][]*tlog.WitnessPrivateKey
	for i := range n {
		name := fmt.Sprintf("witness%d.example/w", len(d.Witnesses)+i+100)
		ed, err := tlog.GenerateWitnessKey(d.Rand, name, tlog.CosignatureEd25519)
		if err != nil {
			return nil, err
		}
		pq, err := tlog.GenerateWitnessKey(d.Rand, name, tlog.CosignatureMLDSA44)
		if err != nil {
			return nil, err
		}
		ws.Witnesses = append(ws.Witnesses, org.WitnessKey{Name: name, Ed25519: ed.Public().Bytes(), MLDSA44: pq.Public().Bytes()})
		all = append(all, []*tlog.WitnessPrivateKey{ed, pq})
	}
	p, err := d.Tenant.ProposeWitnesses(ws, now)
	if err != nil {
		return nil, err
	}
	as, err := d.approvals(p)
	if err != nil {
		return nil, err
	}
	nb, err := d.Tenant.ReplaceWitnesses(p, as)
	if err != nil {
		return nil, err
	}
	d.pendingWitnesses = all
	return nb, nil
}

// switchKeys moves to the pending log key or witnesses after the epoch
// that published them. The witnesses follow a log key rotation from the
// announcing checkpoint; new witnesses start from an empty store, with
// the log key in force.
func (d *Directory) switchKeys() error {
	if d.pendingLog != nil {
		d.LogKey, d.pendingLog = d.pendingLog, nil
	}
	if d.pendingWitnesses == nil {
		return nil
	}
	d.WitnessKeys, d.pendingWitnesses = d.pendingWitnesses, nil
	d.Witnesses = nil
	for _, ks := range d.WitnessKeys {
		w, err := tlog.NewWitness(tlog.WitnessConfig{
			Keys: ks, Logs: map[string]*keys.LogPublicKey{d.Origin: d.LogKey.Public()}, Store: tlog.NewMemoryWitnessStore(),
		})
		if err != nil {
			return err
		}
		d.Witnesses = append(d.Witnesses, w)
	}
	d.cosigned = make([]uint64, len(d.Witnesses))
	return nil
}

// transition is an epoch that published a trust bundle, with its
// checkpoint as last cosigned while it was the latest.
type transition struct {
	epoch uint64
	note  []byte
}

// Transitions answers a request for the transitions after the trust
// bundle of sequence after by a client that trusts a tree of size
// clientSize (docs/spec/directory.md §Following transitions): for each
// epoch that published a bundle of a higher sequence, its cosigned
// checkpoint and the proofs of the trust-bundle label (and the
// ca-rotation label, if it rotated) at that epoch; then the latest
// checkpoint.
func (d *Directory) Transitions(after, clientSize uint64) (*kt.TransitionsResponse, error) {
	ctx := context.Background()
	if clientSize > d.Tree.Size() {
		return nil, fmt.Errorf("kttest: client at size %d, log at %d", clientSize, d.Tree.Size())
	}
	resp := &kt.TransitionsResponse{BaseSize: clientSize, After: after}
	walk := clientSize
	for _, tr := range d.transitions {
		rec, err := d.recordAt(org.Label{Org: org.OrgLabelTrustBundle}, tr.epoch)
		if err != nil {
			return nil, err
		}
		b, err := org.ParseTrustBundle(rec.Value)
		if err != nil {
			return nil, err
		}
		if b.Sequence <= after {
			continue
		}
		m := tr.epoch + 1
		t := &kt.Transition{Note: bytes.Clone(tr.note), BundleRecord: cloneRecord(rec)}
		switch {
		case m > walk && walk > 0:
			t.Consistency, err = d.Tree.ConsistencyProof(ctx, walk, m)
		case m < walk:
			t.Consistency, err = d.Tree.ConsistencyProof(ctx, m, walk)
		}
		if err != nil {
			return nil, err
		}
		if t.Bundle, _, err = d.labelProofAt(org.Label{Org: org.OrgLabelTrustBundle}, tr.epoch); err != nil {
			return nil, err
		}
		if rr, err := d.recordAt(org.Label{Org: org.OrgLabelCARotation}, tr.epoch); err == nil {
			p, _, err := d.labelProofAt(org.Label{Org: org.OrgLabelCARotation}, tr.epoch)
			if err != nil {
				return nil, err
			}
			t.Rotation, t.RotationRecord = &p, cloneRecord(rr)
		}
		resp.Transitions = append(resp.Transitions, t)
		walk = max(walk, m)
	}
	cu, err := d.checkpointUpdate(walk)
	if err != nil {
		return nil, err
	}
	resp.Latest = cu
	p, label, err := d.labelProof(org.Label{Org: org.OrgLabelTrustBundle})
	if err != nil {
		return nil, err
	}
	resp.Bundle, resp.BundleRecord = p, cloneRecord(d.latest(label))
	return resp, nil
}

// recordAt returns the record of l published at epoch.
func (d *Directory) recordAt(l org.Label, epoch uint64) (*kt.ValueRecord, error) {
	rs, err := d.Records(l)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		if r.Epoch == epoch {
			return r, nil
		}
	}
	return nil, fmt.Errorf("kttest: no record of %v at epoch %d", l, epoch)
}

// cloneRecord returns a copy of r that shares no memory with it, so that
// tests may tamper with responses.
func cloneRecord(r *kt.ValueRecord) *kt.ValueRecord {
	c := *r
	c.Value = bytes.Clone(r.Value)
	return &c
}
