package schedule

import (
	"errors"
	"fmt"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
	"github.com/moat-im/moat/crypto/mls/internal/treemath"
)

// PastEpochs is how many epochs before the current one a member keeps
// receiving keys for (docs/spec/mls-profile.md "Old epochs retained").
const PastEpochs = 2

// ErrEpochOrder is returned by History.Push for an epoch that is not newer
// than the last one pushed.
var ErrEpochOrder = errors.New("mls/schedule: past epochs must be pushed in increasing order")

// PastEpoch is what a member keeps of an epoch it has left: enough to
// decrypt application messages that were sent in it and arrive late, and
// its resumption PSK (§8.6). Nothing in it can be used to send.
type PastEpoch struct {
	Epoch            uint64
	SenderDataSecret []byte
	ResumptionPSK    []byte
	Tree             *SecretTree
}

// PrepareApplication is Tree.Prepare restricted to application messages:
// handshake messages of a past epoch are never processed (a stale commit
// or proposal is rejected on its epoch).
func (p *PastEpoch) PrepareApplication(leaf treemath.LeafIndex, generation uint32) (*Pending, error) {
	if p.Tree == nil {
		return nil, ErrDestroyed
	}
	return p.Tree.Prepare(leaf, Application, generation)
}

// Destroy overwrites the epoch's secrets.
func (p *PastEpoch) Destroy() {
	suite.Zero(p.SenderDataSecret)
	suite.Zero(p.ResumptionPSK)
	p.SenderDataSecret, p.ResumptionPSK = nil, nil
	if p.Tree != nil {
		p.Tree.Destroy()
		p.Tree = nil
	}
}

// String redacts the secrets.
func (p PastEpoch) String() string {
	return fmt.Sprintf("schedule.PastEpoch{epoch: %d, REDACTED}", p.Epoch)
}

// GoString redacts the secrets for %#v.
func (p PastEpoch) GoString() string { return p.String() }

// History keeps the PastEpochs most recent past epochs, destroying older
// ones as new ones are pushed. The zero value keeps PastEpochs epochs.
type History struct {
	// Max overrides PastEpochs when positive; a negative Max keeps none.
	Max  int
	past []*PastEpoch // oldest first
}

func (h *History) max() int {
	switch {
	case h.Max > 0:
		return h.Max
	case h.Max < 0:
		return 0
	}
	return PastEpochs
}

// Push records an epoch the member has just left and destroys the oldest
// epochs beyond the limit. p must be newer than every epoch already held.
func (h *History) Push(p *PastEpoch) error {
	if n := len(h.past); n > 0 && p.Epoch <= h.past[n-1].Epoch {
		return ErrEpochOrder
	}
	h.past = append(h.past, p)
	for len(h.past) > h.max() {
		h.past[0].Destroy()
		h.past[0] = nil
		h.past = h.past[1:]
	}
	return nil
}

// Get returns the retained epoch, or nil.
func (h *History) Get(epoch uint64) *PastEpoch {
	for _, p := range h.past {
		if p.Epoch == epoch {
			return p
		}
	}
	return nil
}

// Len returns the number of retained epochs.
func (h *History) Len() int { return len(h.past) }

// Destroy destroys every retained epoch.
func (h *History) Destroy() {
	for _, p := range h.past {
		p.Destroy()
	}
	h.past = nil
}
