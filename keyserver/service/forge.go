package service

import "github.com/moat-im/moat/keyserver/org"

// ForgeNextEpoch has the next epoch publish f's rewrite of the tenant's
// label updates in their place: what an operator holding every key of
// the tenant could publish outside its state machine (for instance a
// timeline entry re-signed by the CA with approvals dual control never
// produced). It is for tests of the clients' checks (adversarial cases);
// the tenant's own state does not change, so an epoch after a forged one
// does not continue its values.
func (t *Tenant) ForgeNextEpoch(f func([]org.Update) ([]org.Update, error)) {
	t.mu.Lock()
	t.forge = f
	t.mu.Unlock()
}
