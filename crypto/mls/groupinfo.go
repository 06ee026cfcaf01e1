package mls

import (
	"fmt"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

// Sign sets g.Signature to SignWithLabel(priv, "GroupInfoTBS",
// GroupInfoTBS) (RFC 9420 §12.4.3) under the group's cipher suite.
func (g *GroupInfo) Sign(priv SignaturePrivateKey) error {
	s, err := getSuite(g.GroupContext.CipherSuite)
	if err != nil {
		return err
	}
	tbs, err := g.TBS()
	if err != nil {
		return err
	}
	sig, err := s.SignWithLabel(suite.SignaturePrivateKey(priv), labelGroupInfoTBS, tbs)
	if err != nil {
		return fmt.Errorf("mls: signing GroupInfo: %w", err)
	}
	g.Signature = sig
	return nil
}

// VerifySignature checks g.Signature with signerKey, the signature key of
// the leaf at g.Signer (§12.4.3.1). It returns ErrInvalidSignature if the
// signature does not verify.
func (g *GroupInfo) VerifySignature(signerKey SignaturePublicKey) error {
	s, err := getSuite(g.GroupContext.CipherSuite)
	if err != nil {
		return err
	}
	tbs, err := g.TBS()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSignature, err)
	}
	if s.VerifyWithLabel(suite.SignaturePublicKey(signerKey), labelGroupInfoTBS, tbs, g.Signature) != nil {
		return ErrInvalidSignature
	}
	return nil
}
