package client

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/server/relay"
)

// UserID, DeviceID and TenantID are the directory's identifiers
// (docs/spec/org.md §Identifiers).
type (
	UserID   = org.UserID
	DeviceID = org.DeviceID
	TenantID = org.TenantID
)

// MessageID names one message of a conversation (docs/spec/content.md
// §Content): random, chosen by the sender, the same on every device.
type MessageID [16]byte

func (id MessageID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero (absent) id.
func (id MessageID) IsZero() bool { return id == MessageID{} }

// ParseMessageID parses the hex form String returns.
func ParseMessageID(s string) (MessageID, error) {
	var id MessageID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("client: message id %q: want %d hex bytes", s, len(id))
	}
	copy(id[:], b)
	return id, nil
}

// ParseUserID parses a user id in hex, as the directory and the admin CLI
// print it.
func ParseUserID(s string) (UserID, error) {
	var id UserID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) || allZero(b) {
		return id, fmt.Errorf("client: user id %q: want %d non-zero hex bytes", s, len(id))
	}
	copy(id[:], b)
	return id, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Config says where the device's organisation runs its services.
type Config struct {
	// DirectoryURL is the key directory's base URL (docs/spec/directory-api.md).
	DirectoryURL string
	// RelayURL is the relay's base URL (docs/spec/api.md).
	RelayURL string
	// RelayName is the relay's name for device authentication; default
	// the host of RelayURL.
	RelayName string
	// RelayKey verifies the relay's signed mailbox heads (T40). Required
	// at enrolment; afterwards the one pinned in the store is used and a
	// different one is refused.
	RelayKey *keys.RelaySigningPublicKey
	// HTTP is the HTTP client for the device's authenticated requests;
	// default http.DefaultClient.
	HTTP *http.Client
	// AnonymousHTTP is the HTTP client for sealed sends and attachment
	// downloads, which must not travel on a connection that carries the
	// device's authenticated requests (docs/spec/api.md §Sealed sends). It
	// must share no connection pool with HTTP. Default: a clone of HTTP's
	// *http.Transport (or of http.DefaultTransport) without keep-alives,
	// so every anonymous request opens a fresh connection; when HTTP has
	// another kind of transport, Open and Enrol refuse with
	// ErrAnonymousHTTP unless AnonymousHTTP is set.
	AnonymousHTTP *http.Client
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives operational logs, never secrets or content; default
	// a discarding logger.
	Logger *slog.Logger
	// MaxAge is how old a directory checkpoint may be; default one hour.
	MaxAge time.Duration
	// OneTimePrekeys is how many one-time X25519 and ML-KEM prekeys the
	// device keeps published; default 20.
	OneTimePrekeys int
	// RecheckAfter is how long a contact's verified device list is used
	// for incoming messages before the directory is asked again, so that a
	// revoked device's messages are refused within RecheckAfter of its
	// revocation's publication (T45). Default one minute; negative: every
	// message.
	RecheckAfter time.Duration
	// KeyRotation is how often the device replaces its signed prekey,
	// last-resort KEM prekey and sealed-sender key at the relay (at Sync);
	// default 7 days, negative: never. KeyGrace is how long a replaced
	// key is kept for messages still in flight before it is erased (a
	// sealed-sender key: after its published expiry); default 30 days,
	// the relay's default maximum envelope TTL.
	KeyRotation, KeyGrace time.Duration
}

// Kind is a message content kind (docs/spec/content.md §Kinds).
type Kind uint8

// Content kinds.
const (
	KindText       Kind = 1
	KindReply      Kind = 2
	KindEdit       Kind = 3
	KindDelete     Kind = 4 // delete for everyone
	KindReaction   Kind = 5
	KindDelivered  Kind = 6 // delivered receipt
	KindRead       Kind = 7 // read receipt
	KindAttachment Kind = 8
	KindTimer      Kind = 9 // the conversation's disappearing-message timer
)

var kindNames = [...]string{KindText: "text", KindReply: "reply", KindEdit: "edit", KindDelete: "delete",
	KindReaction: "reaction", KindDelivered: "delivered", KindRead: "read", KindAttachment: "attachment", KindTimer: "timer"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Attachment is the reference to an encrypted file that package
// client/attach produced; the SDK carries it opaquely.
type Attachment struct {
	Name      string
	MediaType string
	Size      uint64
	// Ref is client/attach's opaque reference (location and keys).
	Ref []byte

	// uploadToken is set by UploadAttachment: the capability with which
	// this device can delete the blob (attachdelete.go). Never sent.
	uploadToken *relay.UploadToken
}

// Message is what Send sends. Which fields apply depends on Kind
// (docs/spec/content.md §Kinds): Text and Mentions for text, reply and
// edit (and as an attachment's caption); Target for reply, edit, delete,
// reaction and the receipts (Targets); Reaction for reaction (empty
// withdraws it); Attachment for attachment; Timer for timer (zero turns
// disappearing messages off).
type Message struct {
	Kind       Kind
	Text       string
	Mentions   []UserID
	Target     MessageID
	Targets    []MessageID // receipts
	Reaction   string
	Attachment *Attachment
	Timer      time.Duration
}

// Record is a message of the local history.
type Record struct {
	ID           MessageID
	Conversation UserID // the other user of the 1:1 conversation
	From         UserID
	FromDevice   DeviceID
	Outgoing     bool
	Kind         Kind // text, reply, attachment or timer
	Text         string
	Mentions     []UserID
	ReplyTo      MessageID
	Attachment   *Attachment
	Timer        time.Duration // a timer record: the new timer
	Sent         time.Time     // the sender's clock
	Received     time.Time     // this device's clock
	Edited       bool
	// Reactions are the current reaction of each user.
	Reactions map[UserID]string
	// Delivered and Read are the users (other than the sender) that sent
	// delivered and read receipts.
	Delivered, Read []UserID
	// ExpiresAt is when a disappearing message is destroyed; zero if never.
	ExpiresAt time.Time
}

// EventKind says what happened.
type EventKind uint8

// Event kinds.
const (
	EventMessage   EventKind = iota + 1 // a new record, Record set
	EventEdited                         // Record edited, Record set
	EventDeleted                        // Message deleted for everyone
	EventExpired                        // Message destroyed by its timer
	EventReaction                       // Record's reactions changed
	EventReceipt                        // Record's receipts changed
	EventTimer                          // the conversation's timer changed
	EventError                          // an incoming message was refused, Err says why
	EventRevoked                        // this device was revoked: the store is wiped
	EventConnected                      // the push channel is up and caught up
	EventAlert                          // Run's monitoring found a change to this user: Alert set

	// EventContactChanged: a contact's keys changed (T14), Change set,
	// Conversation the contact (contactchange.go).
	EventContactChanged
)

var eventNames = [...]string{EventMessage: "message", EventEdited: "edited", EventDeleted: "deleted",
	EventExpired: "expired", EventReaction: "reaction", EventReceipt: "receipt", EventTimer: "timer",
	EventError: "error", EventRevoked: "revoked", EventConnected: "connected", EventAlert: "alert",
	EventContactChanged: "contact changed"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is one entry of the stream Events returns.
type Event struct {
	Kind         EventKind
	Conversation UserID
	Message      MessageID
	Record       *Record
	Err          error
	Alert        *Alert
	Change       *ContactChange
}

// Self describes this device.
type Self struct {
	Tenant TenantID
	User   UserID
	Device DeviceID
	// Fingerprint is the hex SHA-256 fingerprint of the device's identity
	// (kt.IdentityFingerprint), for out-of-band comparison.
	Fingerprint string
}

// Contact is a user as the directory shows them, verified
// (docs/spec/directory.md §Client verification).
type Contact struct {
	User        UserID
	DisplayName string // from the org chart; empty if none
	Department  string // the department's name; empty if none
	Devices     []ContactDevice
	// Epoch is the directory epoch the lookup was verified at.
	Epoch uint64
}

// ContactDevice is one usable device of a contact.
type ContactDevice struct {
	Device      DeviceID
	Fingerprint string // hex, kt.IdentityFingerprint
}

// Verification is the verification status of a contact.
type Verification struct {
	User     UserID
	Verified bool
	// Reason says why the contact is not verified.
	Reason string
	// Epoch is the epoch of the last successful verification.
	Epoch   uint64
	Devices []ContactDevice
	// Unusable lists devices whose certificates are revoked or expired,
	// with the reason.
	Unusable []string
}

// TimelineEntry is one entry of this user's security timeline, from the
// verified key-directory records of the user's label (docs/spec/org.md
// §Timeline).
type TimelineEntry struct {
	Seq    uint64
	Time   time.Time
	Action string // user_added, device_added, device_revoked, ...
	Device DeviceID
	// Actors are the admins (admin:<hex>) or devices (device:<hex>) that
	// made the change.
	Actors []string
	// Epoch is the directory epoch that published the entry.
	Epoch uint64
}

// Errors.
var (
	// ErrNotEnrolled: Open on a store without an enrolled device.
	ErrNotEnrolled = errors.New("client: the store holds no enrolled device")
	// ErrAlreadyEnrolled: Enrol on a store that holds a device.
	ErrAlreadyEnrolled = errors.New("client: the store already holds an enrolled device")
	// ErrRevoked: this device was revoked; its store has been wiped.
	ErrRevoked = errors.New("client: this device was revoked and its store wiped")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("client: closed")
	// ErrUnknownMessage: no message of that id in the conversation.
	ErrUnknownMessage = errors.New("client: unknown message")
	// ErrInvalidMessage: a Message that the content format cannot carry.
	ErrInvalidMessage = errors.New("client: invalid message")
	// ErrNoAnonymousToken: a first message to a device needs an
	// anonymous delivery token and none could be obtained.
	ErrNoAnonymousToken = errors.New("client: no anonymous delivery token for a first contact")
	// ErrRelayKeyMismatch: Config.RelayKey is not the relay key pinned at
	// enrolment.
	ErrRelayKeyMismatch = errors.New("client: relay key differs from the one pinned at enrolment")
)

// ApprovalRequiredError is returned by Enrol when the directory needs
// approvals before it certifies the device (dual control,
// docs/spec/org.md §Dual control): one of the user's enrolled devices
// (Client.ApproveDevice) or the roster's threshold of admins (moatd admin
// approve) must approve Request. Enrol again with the same store and code
// (and any device approval) once they did: the device keeps its keys.
type ApprovalRequiredError struct {
	// Request is the device's EnrolmentRequest encoding, for the approvers.
	Request []byte
	// Fingerprint is the hex SHA-256 of Request, which approvers compare.
	Fingerprint string
	// Reason is the directory's answer.
	Reason string
}

func (e *ApprovalRequiredError) Error() string {
	return "client: enrolment needs approval (request fingerprint " + e.Fingerprint + "): " + e.Reason
}

// UnverifiedContactError says why a contact, or the sender of an incoming
// message, could not be verified in the key directory; the SDK refuses to
// send to or accept from it.
type UnverifiedContactError struct {
	User   UserID
	Device DeviceID // zero if the whole user failed
	Reason string
	Err    error
}

func (e *UnverifiedContactError) Error() string {
	s := "client: contact " + e.User.String()
	if e.Device != (DeviceID{}) {
		s += " device " + e.Device.String()
	}
	s += " not verified: " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *UnverifiedContactError) Unwrap() error { return e.Err }
