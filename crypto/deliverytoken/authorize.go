package deliverytoken

import (
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/moat-im/moat/crypto/sealed"
)

// SpentStore records the anonymous tokens a relay has redeemed
// (docs/spec/envelope.md §Anonymous delivery tokens). Implementations must
// be safe for concurrent use, and Spend must be atomic: of any number of
// concurrent calls with one (keyID, nonce), exactly one succeeds.
// deliverytokentest.TestSpentStore checks these rules.
type SpentStore interface {
	// Spend records (keyID, nonce) as spent. It returns ErrDoubleSpend if
	// it already was, and another error only if the store failed, in which
	// case the token must be refused and nothing is recorded.
	Spend(keyID, nonce [32]byte) error
}

// IssuerKeys is the relay's view of each tenant's current issuer keys.
type IssuerKeys interface {
	// IssuerKey returns the current issuer key of tenant with id keyID, or
	// nil if there is none.
	IssuerKey(tenant [16]byte, keyID [32]byte) *IssuerPublicKey
}

// Authorizer is the relay's check of a SendAuthorization against the
// recipient mailbox (docs/spec/envelope.md §Relay checks). A nil store
// refuses every token of its kind.
type Authorizer struct {
	Verifiers VerifierStore
	Issuers   IssuerKeys
	Spent     SpentStore
}

// Grant describes an authorised send, for rate limiting.
type Grant struct {
	Kind     Kind
	Mailbox  sealed.MailboxID
	Verifier Verifier // KindMAC: the token's verifier
	KeyID    [32]byte // KindAnonymous: the issuer key
}

// LimitKey returns the rate-limit key of the grant
// (docs/spec/envelope.md §Rate-limit keys): the (mailbox, verifier) pair
// for a MAC token, the recipient's tenant for an anonymous token. The
// relay also limits by network address and by recipient mailbox.
func (g *Grant) LimitKey() string {
	switch g.Kind {
	case KindMAC:
		return "mac/" + g.Mailbox.String() + "/" + hex.EncodeToString(g.Verifier[:])
	case KindAnonymous:
		t := g.Mailbox.Tenant()
		return "anon/" + hex.EncodeToString(t[:])
	}
	return "invalid"
}

// Authorize checks auth, a SendAuthorization encoding, for a send to
// mailbox. It returns ErrMalformed, ErrBadToken (for any token that does
// not authorise the send), ErrDoubleSpend, or a store's error wrapped.
// An anonymous token is recorded as spent only once it has verified.
func (a *Authorizer) Authorize(mailbox sealed.MailboxID, auth []byte) (*Grant, error) {
	if !mailbox.Valid() {
		return nil, ErrMalformed
	}
	sa, err := ParseSendAuthorization(auth)
	if err != nil {
		return nil, err
	}
	return a.AuthorizeParsed(mailbox, sa)
}

// AuthorizeParsed is Authorize for a SendAuthorization the caller has
// parsed with ParseSendAuthorization (a relay parses it once, before it
// reads the envelope).
func (a *Authorizer) AuthorizeParsed(mailbox sealed.MailboxID, sa *SendAuthorization) (*Grant, error) {
	if !mailbox.Valid() || sa == nil {
		return nil, ErrMalformed
	}
	g := &Grant{Kind: sa.Kind, Mailbox: mailbox}
	switch sa.Kind {
	case KindMAC:
		if a.Verifiers == nil {
			return nil, ErrBadToken
		}
		g.Verifier = VerifierOf(mailbox, sa.MAC)
		ok, err := a.Verifiers.HasVerifier(mailbox, g.Verifier)
		if err != nil {
			return nil, fmt.Errorf("deliverytoken: verifier store: %w", err)
		}
		if !ok {
			return nil, ErrBadToken
		}
	case KindAnonymous:
		t := sa.Anonymous
		if a.Issuers == nil || a.Spent == nil {
			return nil, ErrBadToken
		}
		tenant := mailbox.Tenant()
		k := a.Issuers.IssuerKey(tenant, t.KeyID)
		digest := ChallengeDigest(tenant)
		if k == nil || subtle.ConstantTimeCompare(t.ChallengeDigest[:], digest[:]) != 1 || !k.verify(t) {
			return nil, ErrBadToken
		}
		if err := a.Spent.Spend(t.KeyID, t.Nonce); err != nil {
			if err == ErrDoubleSpend {
				return nil, err
			}
			return nil, fmt.Errorf("deliverytoken: spent store: %w", err)
		}
		g.KeyID = t.KeyID
	default:
		return nil, ErrMalformed
	}
	return g, nil
}

// MemoryIssuerKeys is an in-memory IssuerKeys, safe for concurrent use.
type MemoryIssuerKeys struct {
	mu sync.RWMutex
	m  map[[16]byte]map[[32]byte]*IssuerPublicKey
}

// NewMemoryIssuerKeys returns an empty set.
func NewMemoryIssuerKeys() *MemoryIssuerKeys {
	return &MemoryIssuerKeys{m: map[[16]byte]map[[32]byte]*IssuerPublicKey{}}
}

// Add makes k a current issuer key of tenant.
func (s *MemoryIssuerKeys) Add(tenant [16]byte, k *IssuerPublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[tenant] == nil {
		s.m[tenant] = map[[32]byte]*IssuerPublicKey{}
	}
	s.m[tenant][k.KeyID()] = k
}

// Remove retires the key with keyID of tenant; its tokens are refused.
func (s *MemoryIssuerKeys) Remove(tenant [16]byte, keyID [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m[tenant], keyID)
}

// IssuerKey implements IssuerKeys.
func (s *MemoryIssuerKeys) IssuerKey(tenant [16]byte, keyID [32]byte) *IssuerPublicKey {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m[tenant][keyID]
}

// MemorySpentStore is an in-memory SpentStore. A relay needs a durable one
// (a restart would otherwise let every token be spent again); this one
// serves tests and single-process development.
type MemorySpentStore struct {
	mu    sync.Mutex
	spent map[[32]byte]map[[32]byte]struct{}
}

// NewMemorySpentStore returns an empty store.
func NewMemorySpentStore() *MemorySpentStore {
	return &MemorySpentStore{spent: map[[32]byte]map[[32]byte]struct{}{}}
}

// Spend implements SpentStore.
func (s *MemorySpentStore) Spend(keyID, nonce [32]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.spent[keyID]
	if set == nil {
		set = map[[32]byte]struct{}{}
		s.spent[keyID] = set
	}
	if _, ok := set[nonce]; ok {
		return ErrDoubleSpend
	}
	set[nonce] = struct{}{}
	return nil
}

// Forget drops the spent nonces of a retired key, once the relay refuses
// that key's tokens.
func (s *MemorySpentStore) Forget(keyID [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.spent, keyID)
}
