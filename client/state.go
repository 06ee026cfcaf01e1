package client

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/crypto/sealed"
)

// The device's records in its localstore.Store. Every record is in the
// empty scope, so each has a key of its own and deleting one destroys its
// key (docs/spec/client-store.md): a destroyed message, a consumed
// one-time prekey or a replaced session state cannot be opened again from
// what the store's files keep. Records are JSON: they are only ever read
// back from the device's own sealed store, never from the network (the
// wire formats are docs/spec/content.md and the crypto packages').
const (
	kindDevice  = "device"  // "self": deviceState
	kindKT      = "kt"      // "state": kt.Client.MarshalState
	kindSPK     = "spk"     // id: signed prekey private key
	kindOPK     = "opk"     // id: one-time X25519 prekey private key
	kindKEM     = "kem"     // id: ML-KEM prekey private key (prekeyRecord)
	kindSession = "session" // peer mailbox: sessionRecord
	kindContact = "contact" // user: contactRecord
	kindAnon    = "anon"    // n: an unspent anonymous delivery token
	kindOutbox  = "outbox"  // n: outboxRecord, an envelope not yet accepted by the relay
	kindSeen    = "seen"    // envelope message id: seenRecord (duplicate suppression)
	kindParked  = "parked"  // mailbox seq: parkedRecord, from a sender not verified yet
	kindConv    = "conv"    // user: convRecord
	kindMsgIdx  = "msgidx"  // message id: msgIndex
	kindMsgPfx  = "msg/"    // + conversation hex; id: local seq: Record
)

var selfID = []byte("self")

// deviceState is the device: its keys and what it pinned at enrolment.
type deviceState struct {
	Enrolled bool
	Revoked  bool

	Tenant TenantID
	User   UserID
	Device DeviceID
	Serial uint64

	IdentitySigning []byte // seed
	IdentityDH      []byte
	MLSSigning      []byte // seed of the MLS signature key (Ed25519)

	Request     []byte // the EnrolmentRequest encoding
	Certificate []byte // the DeviceCertificate encoding
	TrustBundle []byte // the TrustBundle encoding pinned at enrolment
	RelayKey    string // text form

	TokenKey      []byte // MAC delivery-token key
	SealedID      uint32
	SealedSeed    []byte
	SealedExpires time.Time
	SignedID      uint32
	NextPrekeyID  uint32
	Registered    bool // prekeys and sealed-sender key uploaded

	// Medium-term key rotation (rotate.go).
	SignedCreated   time.Time // of the current signed prekey and last-resort KEM prekey
	SealedCreated   time.Time
	LastResortID    uint32
	RotationPending bool         // rotated keys not uploaded yet
	Retired         []retiredKey // replaced keys kept for the grace period

	// One-time prekey checks (prekeycheck.go): when Sync last asked the
	// relay, and how many one-time prekeys the store held then.
	PrekeysChecked time.Time
	PrekeysStored  int

	Head   []byte // the relay's latest signed head of our mailbox (T40)
	Acked  uint64 // the highest Ack of our mailbox the relay confirmed (T40)
	Cursor uint64 // the last mailbox sequence number processed
	Seq    uint64 // local sequence of history records
	Outbox uint64 // next outbox id

	// Unacked lists the processed messages above Acked, in order, at most
	// maxUnacked of them (the latest): their ids are checked when the
	// relay serves those sequence numbers again (sync.go, T40).
	Unacked []unackedMessage

	// The tenant's admin rosters this device verified (rosters.go): their
	// encodings, oldest first, and the admin-roster label's position.
	Rosters   [][]byte        `json:",omitempty"`
	RosterPos *rosterPosition `json:",omitempty"`
}

// unackedMessage is a processed message whose Ack the relay has not
// confirmed: its sequence number and envelope message id.
type unackedMessage struct {
	Seq uint64
	ID  sealed.MessageID
}

type prekeyRecord struct {
	Seed       []byte
	LastResort bool
}

// sessionRecord holds the ratchet sessions with one peer device: Current
// is used to send; Previous is kept so that messages of a session the
// peer started concurrently still decrypt (docs/spec/content.md §Sessions).
type sessionRecord struct {
	User     UserID
	Device   DeviceID
	Current  []byte
	CurGen   uint64
	Previous []byte
	PrevGen  uint64
	// Sealed is the peer's sealed-sender key record (sealed.MarshalKeyRecord).
	Sealed []byte
	// Token is the peer's delivery token for us (mailbox || token), once
	// it sent one.
	Token []byte
	// TokenSent records that our token went to this device in a message.
	TokenSent bool
}

type contactRecord struct {
	Contact
	Verified time.Time
}

type outboxRecord struct {
	Envelope []byte
	Auth     []byte
	Retried  bool // sent again with a fresh anonymous token after a 403
	// Group names the batch the record is sent in (outbox_batch.go).
	Group []byte `json:",omitempty"`
}

type seenRecord struct {
	At time.Time
}

type convRecord struct {
	Timer time.Duration
}

type msgIndex struct {
	Conversation UserID
	Seq          uint64
}

func putJSON(tx localstore.Tx, kind string, id []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put("", kind, id, b)
}

// listedRecord is a record of the store with its id.
type listedRecord[T any] struct {
	id  []byte
	rec T
}

// listJSON reads every record of kind, in the store's order.
func listJSON[T any](st localstore.Store, kind string) ([]listedRecord[T], error) {
	var out []listedRecord[T]
	err := st.View(func(tx localstore.Tx) error {
		return tx.List("", kind, func(id, v []byte) error {
			var r T
			if err := unmarshalJSON(v, &r); err != nil {
				return err
			}
			out = append(out, listedRecord[T]{append([]byte(nil), id...), r})
			return nil
		})
	})
	return out, err
}

// getJSON reads a record; found is false for ErrNotFound.
func getJSON(tx localstore.Tx, kind string, id []byte, v any) (found bool, err error) {
	b, err := tx.Get("", kind, id)
	if errors.Is(err, localstore.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, errors.New("client: corrupt local record " + kind)
	}
	return true, nil
}

func u32(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func msgKind(conv UserID) string { return kindMsgPfx + conv.String() }
