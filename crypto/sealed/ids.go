package sealed

import (
	"crypto/rand"
	"encoding/hex"
)

// MailboxID names a device's mailbox at the relay: its tenant and device
// identifiers, 16 bytes each (docs/spec/envelope.md §Identifiers). Neither
// half may be zero.
type MailboxID [32]byte

// NewMailboxID returns the mailbox of device in tenant.
func NewMailboxID(tenant, device [16]byte) MailboxID {
	var m MailboxID
	copy(m[:16], tenant[:])
	copy(m[16:], device[:])
	return m
}

// Tenant returns the tenant half.
func (m MailboxID) Tenant() (t [16]byte) { copy(t[:], m[:16]); return t }

// Device returns the device half.
func (m MailboxID) Device() (d [16]byte) { copy(d[:], m[16:]); return d }

// Valid reports whether neither half is zero.
func (m MailboxID) Valid() bool { return m.Tenant() != [16]byte{} && m.Device() != [16]byte{} }

func (m MailboxID) String() string { return hex.EncodeToString(m[:]) }

// MessageID is a sender-chosen random envelope identifier; the relay
// enqueues idempotently on it and the recipient deduplicates on it. The
// zero value is reserved.
type MessageID [16]byte

// NewMessageID returns 16 bytes from crypto/rand, never the zero value.
func NewMessageID() MessageID {
	var id MessageID
	for id == (MessageID{}) {
		_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	}
	return id
}

func (id MessageID) String() string { return hex.EncodeToString(id[:]) }
