package deliverytoken

import (
	"github.com/moat-im/moat/crypto/sealed"
)

// A VerifierQuery asks whether Verifier is registered for Mailbox.
type VerifierQuery struct {
	Mailbox  sealed.MailboxID
	Verifier Verifier
}

// VerifierBatchStore is a VerifierStore that answers many lookups at
// once (a durable store: in one read transaction).
type VerifierBatchStore interface {
	VerifierStore
	// HasVerifiers sets found[i] (len(found) == len(qs)) to whether
	// qs[i] is registered, as HasVerifier would. An error fails every
	// query.
	HasVerifiers(qs []VerifierQuery, found []bool) error
}

// AuthorizeBatch is AuthorizeParsed(mailboxes[i], sas[i]) for each i
// with a non-nil sas[i], in order, setting errs[i] to its error (nil:
// authorised); errs[i] is left alone where sas[i] is nil. The verifiers
// of the MAC tokens are looked up together, in one HasVerifiers call if
// the store is a VerifierBatchStore; a failed lookup fails each MAC item
// as AuthorizeParsed does. Anonymous tokens are checked and spent one by
// one, in order, as by AuthorizeParsed. The three slices have one length.
func (a *Authorizer) AuthorizeBatch(mailboxes []sealed.MailboxID, sas []*SendAuthorization, errs []error) {
	if len(sas) != len(mailboxes) || len(errs) != len(mailboxes) {
		panic("deliverytoken: AuthorizeBatch with slices of different lengths")
	}
	bs, _ := a.Verifiers.(VerifierBatchStore)
	var qs []VerifierQuery
	var at []int
	for i, sa := range sas {
		switch {
		case sa == nil:
			continue
		case bs != nil && sa.Kind == KindMAC && mailboxes[i].Valid():
			if qs == nil {
				qs, at = make([]VerifierQuery, 0, len(sas)), make([]int, 0, len(sas))
			}
			qs = append(qs, VerifierQuery{Mailbox: mailboxes[i], Verifier: VerifierOf(mailboxes[i], sa.MAC)})
			at = append(at, i)
		default:
			_, errs[i] = a.AuthorizeParsed(mailboxes[i], sa)
		}
	}
	if len(qs) == 0 {
		return
	}
	found := make([]bool, len(qs))
	if err := bs.HasVerifiers(qs, found); err != nil {
		// The failure may concern one record only (a corrupt one): each
		// MAC item gets the answer AuthorizeParsed gives it on its own.
		for _, i := range at {
			_, errs[i] = a.AuthorizeParsed(mailboxes[i], sas[i])
		}
		return
	}
	for j, i := range at {
		if found[j] {
			errs[i] = nil
		} else {
			errs[i] = ErrBadToken
		}
	}
}

// HasVerifiers implements VerifierBatchStore.
func (s *MemoryVerifiers) HasVerifiers(qs []VerifierQuery, found []bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i, q := range qs {
		_, found[i] = s.m[q.Mailbox][q.Verifier]
	}
	return nil
}
