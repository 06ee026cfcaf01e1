package kt

import (
	"fmt"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/vmap"
)

// rotatedAfter reports whether the client knows a CA rotation after epoch:
// whether the CA key in force at epoch (caAt) is not the pinned one.
func (c *Client) rotatedAfter(epoch uint64) bool {
	for _, p := range c.pastCAs {
		if epoch < p.until {
			return true
		}
	}
	return false
}

// checkRecordEpoch is the record-epoch rule of docs/spec/directory.md
// §Client verification, step 7, for rec, the record accepted at pv (a
// lookup's, or a history's last), and p, the response's record proof:
// if p is given, or rec claims an epoch before the checkpoint's last and
// before a CA rotation the client knows, p must show the map holding
// rec's commitment at rec.Epoch in the checkpoint's tree. Otherwise the
// value could be one a retired CA key signed after its rotation, under a
// backdated record. A failure is a *KTProofError of step StepRecordEpoch
// wrapping ErrRecordEpoch. It changes nothing.
func (c *Client) checkRecordEpoch(pv *proven, rec *ValueRecord, p *EpochProof) error {
	if rec == nil {
		return nil
	}
	fail := func(reason string, err error) error {
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrRecordEpoch, err)
		} else {
			err = ErrRecordEpoch
		}
		return ktErr(StepRecordEpoch, pv, reason, err)
	}
	if p == nil {
		if rec.Epoch < pv.entry.Epoch && c.rotatedAfter(rec.Epoch) {
			return fail(fmt.Sprintf("record of epoch %d, before a CA rotation, without a record proof", rec.Epoch), nil)
		}
		return nil
	}
	if p.Entry.Epoch != rec.Epoch || rec.Epoch >= pv.cp.Size {
		return fail(fmt.Sprintf("record proof at epoch %d for a record of epoch %d", p.Entry.Epoch, rec.Epoch), nil)
	}
	leaf, err := p.Entry.LeafHash()
	if err != nil {
		return fail("record proof's entry does not encode", err)
	}
	if err := tlog.VerifyInclusion(leaf, p.Entry.Epoch, pv.cp.Size, p.Inclusion, pv.cp.Root); err != nil {
		return fail(fmt.Sprintf("entry of epoch %d not in the checkpoint's tree", p.Entry.Epoch), err)
	}
	cm, err := Commit(pv.label, rec)
	if err != nil {
		return fail("record does not encode", err)
	}
	if p.MapProof == nil {
		return fail("no map proof", nil)
	}
	if err := vmap.VerifyInclusion(p.Entry.MapRoot, pv.label, cm, p.MapProof); err != nil {
		return fail(fmt.Sprintf("the map of epoch %d does not hold the record", rec.Epoch), err)
	}
	return nil
}
