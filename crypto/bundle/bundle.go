package bundle

import (
	"fmt"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/pqxdh"
	"github.com/moat-im/moat/crypto/sealed"
)

// Verify checks every signature of an upload under the identity signing
// key of the device that authenticated (docs/spec/bundle.md §Upload). The
// relay stores nothing of an upload that fails. The error wraps
// keys.ErrUnsignedPrekey and names the first item that failed.
func (u *Upload) Verify(identity *keys.IdentitySigningPublicKey) error {
	if identity == nil {
		return ErrMalformed
	}
	if u.SignedPrekey != nil {
		if err := u.SignedPrekey.Verify(identity); err != nil {
			return fmt.Errorf("bundle: signed prekey %d: %w", u.SignedPrekey.ID, err)
		}
	}
	for _, p := range u.OneTimePrekeys {
		if err := p.Verify(identity); err != nil {
			return fmt.Errorf("bundle: one-time prekey %d: %w", p.ID, err)
		}
	}
	for _, p := range u.KEMPrekeys {
		if err := p.Verify(identity); err != nil {
			return fmt.Errorf("bundle: KEM prekey %d: %w", p.ID, err)
		}
	}
	if u.SealedSenderKey != nil {
		if err := u.SealedSenderKey.Verify(identity); err != nil {
			return fmt.Errorf("bundle: sealed-sender key %d: %w", u.SealedSenderKey.ID, err)
		}
	}
	for i, p := range u.KeyPackages {
		if err := p.Verify(identity); err != nil {
			return fmt.Errorf("bundle: KeyPackage %d: %w", i, err)
		}
	}
	return nil
}

// Open checks a BundleResponse for the recipient device whose identity
// the caller verified in the key directory, and whose mailbox it is
// (docs/spec/bundle.md §Served bundles): the identity, every prekey
// signature, and the sealed-sender key record at now. It returns the PQXDH
// bundle to initiate with and the recipient to seal to.
func Open(resp []byte, identity keys.DeviceIdentity, mailbox sealed.MailboxID, now time.Time) (*pqxdh.Bundle, *sealed.Recipient, error) {
	if identity.Signing == nil || identity.DH == nil {
		return nil, nil, ErrMalformed
	}
	r, err := ParseResponse(resp)
	if err != nil {
		return nil, nil, err
	}
	b := r.Bundle
	if !b.Identity.Equal(identity) {
		return nil, nil, ErrIdentityMismatch
	}
	if err := b.SignedPrekey.Verify(identity.Signing); err != nil {
		return nil, nil, err
	}
	if err := b.KEMPrekey.Verify(identity.Signing); err != nil {
		return nil, nil, err
	}
	if b.OneTimePrekey != nil {
		p := &keys.SignedOneTimePrekey{ID: b.OneTimePrekey.ID, Key: b.OneTimePrekey.Key, Signature: r.OneTimePrekeySignature}
		if err := p.Verify(identity.Signing); err != nil {
			return nil, nil, err
		}
	}
	rec, err := sealed.NewRecipient(mailbox, identity.Signing, r.SealedSenderKey, now)
	if err != nil {
		return nil, nil, err
	}
	return b, rec, nil
}
