package sealed

// Wire formats of docs/spec/envelope.md, in TLS presentation language, read
// and written with cryptobyte. Parsing is strict: the envelope's length is
// checked against the buckets before anything is read, every field has a
// fixed size or runs to the end, padding must be zero, and nothing may
// trail.
//
//	struct {
//	    uint8     type = 0x25;
//	    uint8     version = 1;
//	    MailboxID mailbox;          /* tenant[16] || device[16] */
//	    MessageID message_id;       /* 16 random bytes, not zero */
//	    uint32    ttl;              /* 1..MaxTTL seconds */
//	    uint32    key_id;
//	} EnvelopeHeader;
//
//	struct {
//	    EnvelopeHeader header;
//	    opaque enc[1120];           /* X-Wing */
//	    opaque ciphertext[...];     /* HPKE AEAD output, to the end */
//	} SealedEnvelope;               /* exactly one of the bucket sizes */
//
//	struct {
//	    uint8  type = 0x26;
//	    uint8  version = 1;
//	    uint8  content_type;        /* 0x01: ratchet message */
//	    opaque sender_tenant[16];
//	    opaque sender_user[16];
//	    opaque sender_device[16];
//	    uint64 sender_serial;
//	    opaque sender_signing[33];  /* tagged Ed25519 identity key */
//	    opaque sender_dh[33];       /* tagged X25519 identity key */
//	    uint64 timestamp_ms;
//	    opaque content<1..2^24-1>;
//	    opaque padding[...];        /* zero bytes, to the end */
//	} InnerContent;
//
//	struct {
//	    uint8  type = 0x27;
//	    uint8  version = 1;
//	    uint32 id;
//	    uint64 created;
//	    uint64 expires;
//	    opaque key[1217];           /* tagged X-Wing key */
//	    opaque signature[64];
//	} SealedSenderKeyRecord;

import (
	"encoding/binary"
	"math/bits"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

// Type bytes (docs/spec/envelope.md §Encodings are disjoint). They continue
// the 1:1 range of PQXDH (0x21, 0x22) and the ratchet (0x23, 0x24).
const (
	typeEnvelope  = 0x25
	typeInner     = 0x26
	typeKeyRecord = 0x27
	version1      = 1
)

// Sizes of docs/spec/envelope.md §Sizes.
const (
	// HeaderSize is the size of the relay-visible EnvelopeHeader.
	HeaderSize = 2 + 32 + 16 + 4 + 4
	// EncSize is the size of an X-Wing encapsulation.
	EncSize = keys.KEMCiphertextSize + 32
	tagSize = 16
	// innerFixedSize is InnerContent without content and padding.
	innerFixedSize = 3 + 3*16 + 8 + 2*33 + 8 + 3
	// Overhead is what an envelope adds to its content, before padding.
	Overhead = HeaderSize + EncSize + tagSize + innerFixedSize

	minBucketLog = 11
	maxBucketLog = 19
	// MinBucket and MaxBucket are the smallest and largest envelope sizes.
	MinBucket = 1 << minBucketLog
	MaxBucket = 1 << maxBucketLog
	// MaxContentSize is the largest content an envelope carries.
	MaxContentSize = MaxBucket - Overhead

	// MaxTTL is the largest time-to-live, 90 days in seconds.
	MaxTTL = 90 * 24 * 60 * 60

	// KeyRecordSize is the size of a SealedSenderKeyRecord.
	KeyRecordSize = 2 + 4 + 8 + 8 + 1 + keys.SealedSenderPublicKeySize + 64

	identitySigningSize = 33
	identityDHSize      = 33
	signatureSize       = 64
	maxUnix             = 1<<63 - 1
)

// ContentType names what an envelope's content is (docs/spec/envelope.md
// §Inner content).
type ContentType uint8

// ContentRatchetMessage is a ratchet message (docs/spec/ratchet.md
// §Message format), which may carry a PQXDH preamble. It is the only
// content type defined.
const ContentRatchetMessage ContentType = 0x01

func (c ContentType) known() bool { return c == ContentRatchetMessage }

// IsBucket reports whether n is one of the envelope sizes of
// docs/spec/envelope.md §Size buckets.
func IsBucket(n int) bool {
	return n >= MinBucket && n <= MaxBucket && n&(n-1) == 0
}

// BucketFor returns the size of the envelope that carries contentLen bytes
// of content: the smallest bucket of at least contentLen + Overhead bytes.
func BucketFor(contentLen int) (int, error) {
	if contentLen < 1 || contentLen > MaxContentSize {
		return 0, ErrTooLarge
	}
	need := uint(contentLen + Overhead)
	b := 1 << bits.Len(need-1) // next power of two ≥ need
	return max(b, MinBucket), nil
}

// Header is the relay-visible part of an envelope, also its HPKE
// associated data (docs/spec/envelope.md §Envelope).
type Header struct {
	Mailbox   MailboxID
	MessageID MessageID
	TTL       uint32 // seconds, 1..MaxTTL
	KeyID     uint32 // the recipient's sealed-sender key id
}

func (h *Header) valid() bool {
	return h.Mailbox.Valid() && h.MessageID != (MessageID{}) && h.TTL >= 1 && h.TTL <= MaxTTL
}

// appendHeader appends the 58-byte EnvelopeHeader.
func appendHeader(b []byte, h *Header) []byte {
	b = append(b, typeEnvelope, version1)
	b = append(b, h.Mailbox[:]...)
	b = append(b, h.MessageID[:]...)
	b = binary.BigEndian.AppendUint32(b, h.TTL)
	return binary.BigEndian.AppendUint32(b, h.KeyID)
}

// Marshal returns the 58-byte header encoding.
func (h *Header) Marshal() ([]byte, error) {
	if !h.valid() {
		return nil, ErrMalformed
	}
	return appendHeader(make([]byte, 0, HeaderSize), h), nil
}

// ParseHeader checks that envelope is a whole envelope of one of the bucket
// sizes and parses its header, as a relay does before it enqueues it
// (docs/spec/envelope.md §Envelope). It does not retain envelope.
func ParseHeader(envelope []byte) (*Header, error) {
	if !IsBucket(len(envelope)) {
		return nil, ErrMalformed
	}
	s := cryptobyte.String(envelope[:HeaderSize])
	var typ, ver uint8
	h := new(Header)
	if !s.ReadUint8(&typ) || typ != typeEnvelope || !s.ReadUint8(&ver) || ver != version1 ||
		!s.CopyBytes(h.Mailbox[:]) || !s.CopyBytes(h.MessageID[:]) ||
		!s.ReadUint32(&h.TTL) || !s.ReadUint32(&h.KeyID) || !h.valid() {
		return nil, ErrMalformed
	}
	return h, nil
}

// Sender names the sender inside an envelope: a reference to its device
// certificate (docs/spec/org.md §Device certificates) and its device
// identity (docs/spec/envelope.md §Inner content). The identifiers are the
// org package's TenantID, UserID and DeviceID.
type Sender struct {
	Tenant, User, Device [16]byte
	Serial               uint64 // the sender's DeviceCertificate serial
	Identity             keys.DeviceIdentity
}

func (s *Sender) valid() bool {
	return s.Tenant != [16]byte{} && s.User != [16]byte{} && s.Device != [16]byte{} && s.Serial != 0 &&
		s.Identity.Signing != nil && s.Identity.DH != nil
}

// inner is the decoded InnerContent.
type inner struct {
	contentType ContentType
	sender      Sender
	timestampMS uint64
	content     []byte
}

// appendInner appends the InnerContent of in, padded with zero bytes to
// size bytes in all. The caller has checked in and that it fits.
func appendInner(b []byte, in *inner, size int) []byte {
	start := len(b)
	b = append(b, typeInner, version1, byte(in.contentType))
	b = append(b, in.sender.Tenant[:]...)
	b = append(b, in.sender.User[:]...)
	b = append(b, in.sender.Device[:]...)
	b = binary.BigEndian.AppendUint64(b, in.sender.Serial)
	b = append(b, in.sender.Identity.Signing.Bytes()...)
	b = append(b, in.sender.Identity.DH.Bytes()...)
	b = binary.BigEndian.AppendUint64(b, in.timestampMS)
	n := len(in.content)
	b = append(b, byte(n>>16), byte(n>>8), byte(n))
	b = append(b, in.content...)
	for len(b)-start < size {
		b = append(b, 0)
	}
	return b
}

// parseInner parses a decrypted InnerContent strictly. The content is
// copied out of pt.
func parseInner(pt []byte) (*inner, error) {
	s := cryptobyte.String(pt)
	in := new(inner)
	var typ, ver, ct uint8
	var sig, dh []byte
	var content cryptobyte.String
	if !s.ReadUint8(&typ) || typ != typeInner || !s.ReadUint8(&ver) || ver != version1 ||
		!s.ReadUint8(&ct) || !ContentType(ct).known() ||
		!s.CopyBytes(in.sender.Tenant[:]) || !s.CopyBytes(in.sender.User[:]) || !s.CopyBytes(in.sender.Device[:]) ||
		!s.ReadUint64(&in.sender.Serial) ||
		!s.ReadBytes(&sig, identitySigningSize) || !s.ReadBytes(&dh, identityDHSize) ||
		!s.ReadUint64(&in.timestampMS) || in.timestampMS > maxUnix ||
		!s.ReadUint24LengthPrefixed(&content) || len(content) == 0 {
		return nil, ErrMalformed
	}
	for _, c := range s { // the padding
		if c != 0 {
			return nil, ErrMalformed
		}
	}
	in.contentType = ContentType(ct)
	var err error
	if in.sender.Identity.Signing, err = keys.ParseIdentitySigningPublicKey(sig); err != nil {
		return nil, ErrMalformed
	}
	if in.sender.Identity.DH, err = keys.ParseIdentityDHPublicKey(dh); err != nil {
		return nil, ErrMalformed
	}
	if !in.sender.valid() {
		return nil, ErrMalformed
	}
	in.content = append([]byte(nil), content...)
	return in, nil
}

// MarshalKeyRecord returns the SealedSenderKeyRecord encoding of k
// (docs/spec/envelope.md §Sealed-sender key records).
func MarshalKeyRecord(k *keys.SealedSenderKey) ([]byte, error) {
	if k == nil || k.Key == nil || len(k.Signature) != signatureSize || !validPeriod(k.Created, k.Expires) {
		return nil, ErrMalformed
	}
	b := make([]byte, 0, KeyRecordSize)
	b = append(b, typeKeyRecord, version1)
	b = binary.BigEndian.AppendUint32(b, k.ID)
	b = binary.BigEndian.AppendUint64(b, uint64(k.Created.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(k.Expires.Unix()))
	b = append(b, k.Key.Bytes()...)
	return append(b, k.Signature...), nil
}

// ParseKeyRecord parses a SealedSenderKeyRecord strictly. It does not
// verify the signature or the validity period: NewRecipient does.
func ParseKeyRecord(data []byte) (*keys.SealedSenderKey, error) {
	if len(data) != KeyRecordSize {
		return nil, ErrMalformed
	}
	s := cryptobyte.String(data)
	var typ, ver uint8
	var created, expires uint64
	var key, sig []byte
	k := new(keys.SealedSenderKey)
	if !s.ReadUint8(&typ) || typ != typeKeyRecord || !s.ReadUint8(&ver) || ver != version1 ||
		!s.ReadUint32(&k.ID) || !s.ReadUint64(&created) || !s.ReadUint64(&expires) ||
		created > maxUnix || expires > maxUnix ||
		!s.ReadBytes(&key, 1+keys.SealedSenderPublicKeySize) || !s.ReadBytes(&sig, signatureSize) || !s.Empty() {
		return nil, ErrMalformed
	}
	k.Created = time.Unix(int64(created), 0).UTC()
	k.Expires = time.Unix(int64(expires), 0).UTC()
	if !validPeriod(k.Created, k.Expires) {
		return nil, ErrMalformed
	}
	var err error
	if k.Key, err = keys.ParseSealedSenderPublicKey(key); err != nil {
		return nil, &KeyError{Err: err}
	}
	k.Signature = append([]byte(nil), sig...)
	return k, nil
}

// validPeriod reports whether created < expires, both in [0, 2^63−1]
// seconds and whole.
func validPeriod(created, expires time.Time) bool {
	return created.Unix() >= 0 && created.Before(expires) && created.Nanosecond() == 0 && expires.Nanosecond() == 0
}
