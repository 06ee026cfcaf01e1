package clienttest

import (
	"errors"

	"github.com/moat-im/moat/keyserver/org"
)

// ForgeApprovals has the next epoch publish user's value with the admin
// approvals of its last timeline entry rewritten by forge and the entry
// re-signed by the CA: what an operator holding the CA key could publish
// outside the tenant's dual control (adversarial case T29). The tenant's
// own state keeps the genuine entry. It uses the tenant's first CA key
// (not after RotateCA).
func (s *Server) ForgeApprovals(user org.UserID, forge func([]*org.Approval) []*org.Approval) {
	s.Service.Tenant(s.Tenant).ForgeNextEpoch(func(ups []org.Update) ([]org.Update, error) {
		for i, up := range ups {
			if up.Label != (org.Label{User: user}) {
				continue
			}
			v, err := org.ParseUserValue(up.Value)
			if err != nil {
				return nil, err
			}
			if len(v.Entries) == 0 {
				return nil, errors.New("clienttest: no timeline entry to forge")
			}
			e := v.Entries[len(v.Entries)-1]
			e.Approvals = forge(e.Approvals)
			enc, err := e.Marshal()
			if err != nil {
				return nil, err
			}
			body := enc[:len(enc)-org.SignatureSize]
			if e.Signature, err = s.ca.Sign(append([]byte("moat/v1/org/timeline-entry\x00"), body...)); err != nil {
				return nil, err
			}
			if v.Head.Hash, err = e.Hash(); err != nil {
				return nil, err
			}
			if ups[i].Value, err = v.Marshal(); err != nil {
				return nil, err
			}
			return ups, nil
		}
		return nil, errors.New("clienttest: no update of the user to forge")
	})
}
