package mls

// Welcome messages (RFC 9420 §12.4.3.1): creation by a committer and the
// decryption steps a joiner runs before it builds its group state (Join,
// in group_join.go).

import (
	"bytes"
	"fmt"

	"github.com/moat-im/moat/crypto/mls/internal/schedule"
	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

// findWelcomeSecrets returns the entry of w.secrets whose new_member is
// ref (§12.4.3.1, first step).
func findWelcomeSecrets(w *Welcome, ref KeyPackageRef) *EncryptedGroupSecrets {
	for i := range w.Secrets {
		if bytes.Equal(w.Secrets[i].NewMember, ref) {
			return &w.Secrets[i]
		}
	}
	return nil
}

// decryptGroupSecrets opens one joiner's GroupSecrets (§12.4.3.1):
//
//	group_secrets = DecryptWithLabel(init_key_priv, "Welcome",
//	                                 encrypted_group_info, kem_output, ciphertext)
func decryptGroupSecrets(s *suite.Suite, initPriv HPKEPrivateKey, egs *EncryptedGroupSecrets, encryptedGroupInfo []byte) (*GroupSecrets, error) {
	pt, err := s.DecryptWithLabel(suite.HPKEPrivateKey(initPriv), labelWelcome, encryptedGroupInfo,
		egs.EncryptedGroupSecrets.KEMOutput, egs.EncryptedGroupSecrets.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: group secrets do not decrypt", ErrInvalidWelcome)
	}
	defer suite.Zero(pt)
	gs, err := DecodeGroupSecrets(pt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidWelcome, err)
	}
	if len(gs.JoinerSecret) != s.Nh() || (gs.PathSecret != nil && len(gs.PathSecret.PathSecret) != s.Nh()) {
		return nil, fmt.Errorf("%w: group secrets of the wrong length", ErrInvalidWelcome)
	}
	return gs, nil
}

// encryptGroupSecrets is the committer's side of decryptGroupSecrets.
func encryptGroupSecrets(s *suite.Suite, initKey HPKEPublicKey, gs *GroupSecrets, encryptedGroupInfo []byte) (HPKECiphertext, error) {
	pt, err := gs.Encode()
	if err != nil {
		return HPKECiphertext{}, err
	}
	defer suite.Zero(pt)
	kemOutput, ct, err := s.EncryptWithLabel(suite.HPKEPublicKey(initKey), labelWelcome, encryptedGroupInfo, pt)
	if err != nil {
		return HPKECiphertext{}, fmt.Errorf("mls: encrypting group secrets: %w", err)
	}
	return HPKECiphertext{KEMOutput: kemOutput, Ciphertext: ct}, nil
}

// decryptGroupInfo opens encrypted_group_info with the key and nonce
// derived from welcome_secret (§12.4.3.1; the AAD is empty).
func decryptGroupInfo(s *suite.Suite, welcomeSecret, encryptedGroupInfo []byte) (*GroupInfo, error) {
	key, nonce, err := schedule.WelcomeKeyNonce(s, welcomeSecret)
	if err != nil {
		return nil, err
	}
	defer suite.Zero(key)
	pt, err := s.Open(key, nonce, nil, encryptedGroupInfo)
	if err != nil {
		return nil, fmt.Errorf("%w: group info does not decrypt", ErrInvalidWelcome)
	}
	gi, err := DecodeGroupInfo(pt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidWelcome, err)
	}
	return gi, nil
}

// encryptGroupInfo is the committer's side of decryptGroupInfo.
func encryptGroupInfo(s *suite.Suite, welcomeSecret []byte, gi *GroupInfo) ([]byte, error) {
	key, nonce, err := schedule.WelcomeKeyNonce(s, welcomeSecret)
	if err != nil {
		return nil, err
	}
	defer suite.Zero(key)
	pt, err := gi.Encode()
	if err != nil {
		return nil, err
	}
	return s.Seal(key, nonce, nil, pt)
}

// welcomeJoinerSecrets is what a joiner learns from the secret part of a
// Welcome before it sees the tree: the GroupSecrets, the psk_secret of the
// PSKs they name, and the decrypted GroupInfo.
type welcomeJoinerSecrets struct {
	secrets   *GroupSecrets
	pskSecret []byte
	groupInfo *GroupInfo
}

// openWelcome runs the first steps of §12.4.3.1: find the entry for the
// KeyPackage, decrypt the GroupSecrets, resolve the PSKs, and decrypt the
// GroupInfo. resolve returns the value of each PSK (ErrMissingPSK if one is
// unavailable).
func openWelcome(s *suite.Suite, w *Welcome, kp *KeyPackage, initPriv HPKEPrivateKey,
	resolve func(*PreSharedKeyID) ([]byte, error)) (*welcomeJoinerSecrets, error) {
	if w.CipherSuite != kp.CipherSuite {
		return nil, fmt.Errorf("%w: welcome cipher suite 0x%04x, key package 0x%04x", ErrNoMatchingKeyPackage, uint16(w.CipherSuite), uint16(kp.CipherSuite))
	}
	ref, err := kp.Ref()
	if err != nil {
		return nil, err
	}
	egs := findWelcomeSecrets(w, ref)
	if egs == nil {
		return nil, ErrNoMatchingKeyPackage
	}
	gs, err := decryptGroupSecrets(s, initPriv, egs, w.EncryptedGroupInfo)
	if err != nil {
		return nil, err
	}
	// §12.4.3.1: at most one resumption PSK with usage reinit or branch.
	special := 0
	for i := range gs.PSKs {
		p := &gs.PSKs[i]
		if p.Type == PSKTypeResumption && p.Usage != ResumptionPSKUsageApplication {
			special++
		}
	}
	if special > 1 {
		return nil, fmt.Errorf("%w: more than one reinit or branch PSK", ErrInvalidWelcome)
	}
	pskSecret, err := pskSecretOf(s, gs.PSKs, resolve)
	if err != nil {
		return nil, err
	}
	welcomeSecret, err := schedule.WelcomeSecretFromJoiner(s, gs.JoinerSecret, pskSecret)
	if err != nil {
		return nil, err
	}
	defer suite.Zero(welcomeSecret)
	gi, err := decryptGroupInfo(s, welcomeSecret, w.EncryptedGroupInfo)
	if err != nil {
		return nil, err
	}
	if gi.GroupContext.CipherSuite != kp.CipherSuite {
		return nil, fmt.Errorf("%w: group info cipher suite differs from the key package's", ErrInvalidWelcome)
	}
	return &welcomeJoinerSecrets{secrets: gs, pskSecret: pskSecret, groupInfo: gi}, nil
}

// pskSecretOf computes psk_secret (§8.4) for the PSKs in order, with each
// value from resolve. It checks every psk_nonce is KDF.Nh bytes (§12.1.4).
// No PSKs give nil, which the key schedule reads as the all-zero vector.
func pskSecretOf(s *suite.Suite, ids []PreSharedKeyID, resolve func(*PreSharedKeyID) ([]byte, error)) ([]byte, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	psks := make([]schedule.PSK, len(ids))
	for i := range ids {
		if len(ids[i].Nonce) != s.Nh() {
			return nil, fmt.Errorf("%w: psk_nonce of %d bytes", ErrInvalidProposal, len(ids[i].Nonce))
		}
		enc, err := ids[i].Encode()
		if err != nil {
			return nil, err
		}
		v, err := resolve(&ids[i])
		if err != nil {
			return nil, err
		}
		psks[i] = schedule.PSK{ID: enc, Value: v}
	}
	return schedule.PSKSecret(s, psks)
}
