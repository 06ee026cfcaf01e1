package relay

import (
	"context"

	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/store/prekey"
)

// VerifierPurger is a Verifiers store that can delete every verifier of a
// mailbox; deliverytoken.MemoryVerifiers and badgertokens.Store are. The
// relay uses it to forget a revoked device's verifiers.
type VerifierPurger interface {
	RemoveMailbox(mb sealed.MailboxID) error
}

// forgetRevoked deletes what the relay keeps for a device it found revoked
// (docs/spec/api.md §Revoked devices): its sessions, its prekeys,
// sealed-sender key and KeyPackages, and its delivery-token verifiers. A
// device that holds nothing costs reads only. Failures are logged (without
// the mailbox) and retried when the revocation is next noticed.
func (r *Relay) forgetRevoked(ctx context.Context, mb sealed.MailboxID) {
	r.sessions.dropDevice(mb)
	id := prekeyID(mb)
	st, err := r.opts.Prekeys.Status(ctx, id)
	if err != nil || holdsPrekeys(st) {
		if err := r.opts.Prekeys.Delete(ctx, id); err != nil {
			r.opts.Logger.Warn("deleting a revoked device's prekeys", "err", redactErr(err))
		}
	}
	if p, ok := r.opts.Verifiers.(VerifierPurger); ok {
		if err := p.RemoveMailbox(mb); err != nil {
			r.opts.Logger.Warn("deleting a revoked device's verifiers", "err", redactErr(err))
		}
	}
}

func holdsPrekeys(st prekey.Status) bool {
	for _, n := range st.Pools {
		if n > 0 {
			return true
		}
	}
	for _, h := range st.Has {
		if h {
			return true
		}
	}
	return false
}
