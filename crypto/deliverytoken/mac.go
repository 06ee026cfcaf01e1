package deliverytoken

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/moat-im/moat/crypto/internal/label"
	"github.com/moat-im/moat/crypto/sealed"
)

// MAC delivery tokens (docs/spec/envelope.md §MAC delivery tokens):
//
//	token    = HMAC-SHA-256(token_key, "moat/v1/delivery-token/mac" || 0x00 ||
//	                                   mailbox || contact || uint32 generation)
//	verifier = SHA-256("moat/v1/delivery-token/verifier" || 0x00 || mailbox || token)

const (
	// TokenKeySize is the size of a device's token key.
	TokenKeySize = 32
	// MaxVerifiers is the most verifiers a relay keeps for one mailbox.
	MaxVerifiers = 4096
)

// TokenKey is a device's secret from which it derives the MAC delivery
// tokens it hands to its contacts. It prints as a redaction.
type TokenKey struct {
	_ [0]func() // not comparable
	k *[TokenKeySize]byte
}

// GenerateTokenKey returns a new token key read from rand, or from
// crypto/rand if rand is nil.
func GenerateTokenKey(r io.Reader) (*TokenKey, error) {
	if r == nil {
		r = rand.Reader
	}
	k := new([TokenKeySize]byte)
	if _, err := io.ReadFull(r, k[:]); err != nil {
		return nil, err
	}
	return &TokenKey{k: k}, nil
}

// NewTokenKey imports a 32-byte token key.
func NewTokenKey(b []byte) (*TokenKey, error) {
	if len(b) != TokenKeySize {
		return nil, ErrMalformed
	}
	k := new([TokenKeySize]byte)
	copy(k[:], b)
	return &TokenKey{k: k}, nil
}

// Bytes returns a copy of the key, for an encrypted store. Callers must
// not log it.
func (k *TokenKey) Bytes() []byte { return append([]byte(nil), k.k[:]...) }

// Format prints a redaction with every verb.
func (k *TokenKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[secret key redacted]")) }

// ContactID names a contact to its token: RECOMMENDED is the contact's
// tenant and user identifiers, 16 bytes each, so that all of the contact's
// devices share its token. SharedContact, all zero, names the shared
// token a device may give to every contact.
type ContactID [32]byte

// SharedContact is the contact of the shared token.
var SharedContact ContactID

// NewContactID returns the contact id of a user.
func NewContactID(tenant, user [16]byte) ContactID {
	var c ContactID
	copy(c[:16], tenant[:])
	copy(c[16:], user[:])
	return c
}

// Token is a MAC delivery token: a bearer credential that lets its holder
// send to one mailbox. It prints as a redaction.
type Token [32]byte

// Format prints a redaction with every verb.
func (Token) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[delivery token redacted]")) }

// Verifier is what the relay stores for a token: it can check the token
// but not make it.
type Verifier [32]byte

// Token derives the token of contact, at generation, for mailbox, the
// device's own mailbox.
func (k *TokenKey) Token(mailbox sealed.MailboxID, contact ContactID, generation uint32) Token {
	m := hmac.New(sha256.New, k.k[:])
	m.Write([]byte(label.DeliveryTokenMAC))
	m.Write([]byte{0})
	m.Write(mailbox[:])
	m.Write(contact[:])
	var g [4]byte
	binary.BigEndian.PutUint32(g[:], generation)
	m.Write(g[:])
	var t Token
	m.Sum(t[:0])
	return t
}

// Verifier returns the verifier of contact's token at generation, which
// the device registers (or, to revoke the contact, deletes) at the relay.
func (k *TokenKey) Verifier(mailbox sealed.MailboxID, contact ContactID, generation uint32) Verifier {
	return VerifierOf(mailbox, k.Token(mailbox, contact, generation))
}

// VerifierOf computes the verifier of token for mailbox, as the relay does
// for every MAC-authorised send.
func VerifierOf(mailbox sealed.MailboxID, token Token) Verifier {
	// label || 0x00 || mailbox || token, in one buffer on the stack.
	var in [len(label.DeliveryTokenVerifier) + 1 + len(mailbox) + len(token)]byte
	b := append(in[:0], label.DeliveryTokenVerifier...)
	b = append(b, 0)
	b = append(b, mailbox[:]...)
	b = append(b, token[:]...)
	return sha256.Sum256(b)
}

// Equal reports in constant time whether two tokens are the same.
func (t Token) Equal(o Token) bool { return subtle.ConstantTimeCompare(t[:], o[:]) == 1 }

// VerifierStore is the relay's set of registered verifiers per mailbox.
type VerifierStore interface {
	// HasVerifier reports whether v is registered for mailbox.
	HasVerifier(mailbox sealed.MailboxID, v Verifier) (bool, error)
}

// MemoryVerifiers is an in-memory VerifierStore, safe for concurrent use.
// A relay needs a durable one (a restart would otherwise forget every
// registered verifier: server/store/tokens/badgertokens); this one serves
// tests and single-process development.
type MemoryVerifiers struct {
	mu sync.RWMutex
	m  map[sealed.MailboxID]map[Verifier]struct{}
}

// NewMemoryVerifiers returns an empty store.
func NewMemoryVerifiers() *MemoryVerifiers {
	return &MemoryVerifiers{m: map[sealed.MailboxID]map[Verifier]struct{}{}}
}

// Add registers v for mailbox. Registering a verifier twice is not an
// error; a mailbox holds at most MaxVerifiers (ErrTooManyVerifiers).
func (s *MemoryVerifiers) Add(mailbox sealed.MailboxID, v Verifier) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.m[mailbox]
	if set == nil {
		set = map[Verifier]struct{}{}
		s.m[mailbox] = set
	}
	if _, ok := set[v]; ok {
		return nil
	}
	if len(set) >= MaxVerifiers {
		return ErrTooManyVerifiers
	}
	set[v] = struct{}{}
	return nil
}

// Remove deletes v from mailbox: the contact's token stops working. It
// never fails; the error is that of a durable store's Remove.
func (s *MemoryVerifiers) Remove(mailbox sealed.MailboxID, v Verifier) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m[mailbox], v)
	return nil
}

// RemoveMailbox deletes every verifier of mailbox (a revoked device's).
func (s *MemoryVerifiers) RemoveMailbox(mailbox sealed.MailboxID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, mailbox)
	return nil
}

// HasVerifier implements VerifierStore.
func (s *MemoryVerifiers) HasVerifier(mailbox sealed.MailboxID, v Verifier) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.m[mailbox][v]
	return ok, nil
}
