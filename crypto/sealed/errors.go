package sealed

import "errors"

// Errors of docs/spec/envelope.md §Errors.
var (
	// ErrMalformed is returned for an encoding that breaks the parsing
	// rules of docs/spec/envelope.md.
	ErrMalformed = errors.New("sealed: malformed encoding")
	// ErrTooLarge is returned by Seal for content that is empty or longer
	// than MaxContentSize.
	ErrTooLarge = errors.New("sealed: content empty or too large")
	// ErrKeyExpired is returned by NewRecipient for a sealed-sender key
	// record at or past its expiry.
	ErrKeyExpired = errors.New("sealed: sealed-sender key expired")
	// ErrWrongMailbox is returned by Open for an envelope addressed to
	// another mailbox.
	ErrWrongMailbox = errors.New("sealed: envelope addressed to another mailbox")
	// ErrUnknownKey is returned by Open for an envelope sealed to a key the
	// keyring does not hold.
	ErrUnknownKey = errors.New("sealed: unknown sealed-sender key")
	// ErrDecrypt is the one error of every envelope that does not open,
	// whatever the cause.
	ErrDecrypt = errors.New("sealed: envelope does not open")
	// ErrSenderMismatch is returned by CheckPeer when the sender named
	// inside an envelope is not the peer the recipient would decrypt with.
	ErrSenderMismatch = errors.New("sealed: sender does not match the session peer")
)

// KeyError wraps a crypto/keys decoding error met while parsing a key
// record, so that a caller can tell a bad key from a bad frame.
type KeyError struct{ Err error }

func (e *KeyError) Error() string { return "sealed: " + e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }
