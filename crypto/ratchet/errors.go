package ratchet

import "errors"

// Decisions a caller acts on (docs/spec/ratchet.md §Errors). Every failure
// to authenticate a message is ErrDecrypt, whatever the cause.
var (
	// ErrDecrypt is returned for any message that does not authenticate.
	ErrDecrypt = errors.New("ratchet: message failed to decrypt")
	// ErrMalformed is returned for a message that does not parse.
	ErrMalformed = errors.New("ratchet: malformed message")
	// ErrDuplicate is returned for a message already decrypted (T01).
	ErrDuplicate = errors.New("ratchet: duplicate message")
	// ErrExpired is returned for a message whose key was skipped but has
	// since expired or been evicted: an explicit, permanent gap (T04, T33).
	ErrExpired = errors.New("ratchet: message key expired")
	// ErrTooFarAhead is returned for a message that would need more than
	// MaxSkip keys derived, or lies past MaxChainMessages (T05).
	ErrTooFarAhead = errors.New("ratchet: message number too far ahead")
	// ErrUnknownChain is returned for a message of a chain the receiver
	// cannot establish: the establishment block is missing, or it names a
	// base root or private key the receiver no longer holds.
	ErrUnknownChain = errors.New("ratchet: unknown or expired chain")
	// ErrTooLarge is returned for a plaintext over MaxPlaintextSize.
	ErrTooLarge = errors.New("ratchet: message too large")
	// ErrRollback is returned by Unmarshal for state older than the
	// generation the caller last saw (T13).
	ErrRollback = errors.New("ratchet: state rolled back")
	// ErrInvalidParams is returned by the constructors and Unmarshal for
	// parameters that do not describe a usable session.
	ErrInvalidParams = errors.New("ratchet: invalid session parameters")
	// ErrCannotSendYet is returned by Encrypt on a responder that has not
	// yet received a message, and so knows no ratchet key of its peer.
	ErrCannotSendYet = errors.New("ratchet: responder cannot send before it has received")
	// ErrChainsExhausted is returned when a session has used up its 2^32
	// chain indices; start a new session.
	ErrChainsExhausted = errors.New("ratchet: chain index space exhausted")
	// ErrAttribution is returned when a session requires attributable
	// messages and a message lacks a valid sender signature.
	ErrAttribution = errors.New("ratchet: missing or invalid sender signature")
)
