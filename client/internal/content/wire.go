// Package content implements the message content format of
// docs/spec/content.md: what a device encrypts with the ratchet for each
// message of a conversation. It does no I/O.
package content

import (
	"bytes"
	"errors"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
)

// Version is the content format version (§Content).
const Version = 1

// Kind is ContentKind (§Kinds).
type Kind uint8

// The kinds of §Kinds.
const (
	Text       Kind = 1
	Reply      Kind = 2
	Edit       Kind = 3
	Delete     Kind = 4
	Reaction   Kind = 5
	Delivered  Kind = 6
	Read       Kind = 7
	Attachment Kind = 8
	Timer      Kind = 9
)

// Limits of §Limits.
const (
	IDSize        = 16
	TokenSize     = 64 // mailbox[32] || token[32]
	MaxText       = 1<<16 - 1
	MaxMentions   = 64
	MaxTargets    = 256
	MaxReaction   = 64
	MaxName       = 255
	MaxMediaType  = 255
	MaxRef        = 1<<16 - 1
	MaxTimer      = 365 * 24 * 3600 // seconds
	maxSentAtMS   = 1<<63 - 1
	MaxSize       = 1 + 1 + IDSize + 8 + 4 + 1 + IDSize + 1 + TokenSize + IDSize + 2 + MaxText + 2 + MaxMentions*IDSize + 2 + MaxRef + 2*256 + 8
	maxTargetsLen = MaxTargets * IDSize
)

// ErrMalformed is returned by Parse for anything that is not a minimal,
// valid encoding, and by Marshal for a Content that has none.
var ErrMalformed = errors.New("content: malformed content")

// ID is a 16-byte message or user identifier.
type ID [IDSize]byte

// File is an attachment reference (§Attachment).
type File struct {
	Name      string
	MediaType string
	Size      uint64
	Ref       []byte
}

// Content is one decoded Content structure (§Content). Fields that the
// kind does not carry are zero.
type Content struct {
	Kind        Kind
	MessageID   ID
	SentAt      time.Time // millisecond precision
	ExpireAfter uint32    // seconds; 0: the message does not disappear
	// Conversation is set only in a sync transcript (§Sync transcripts):
	// the other user of the conversation a device's own message belongs to.
	Conversation ID
	// Token is the sender device's delivery token for the recipient's user:
	// its mailbox, then the MAC token (§Delivery tokens); empty if none.
	Token []byte

	Text     string // text, reply, edit; an attachment's caption
	Mentions []ID   // strictly increasing
	Target   ID     // reply, edit, delete, reaction
	Targets  []ID   // delivered, read: strictly increasing
	Reaction string // reaction; empty withdraws
	File     *File  // attachment
	Timer    uint32 // timer: seconds, 0 off
}

func validText(s string, min int) bool {
	return len(s) >= min && len(s) <= MaxText && utf8.ValidString(s)
}

func increasing(ids []ID, max int) bool {
	if len(ids) > max {
		return false
	}
	for i := range ids {
		if ids[i] == (ID{}) || (i > 0 && bytes.Compare(ids[i-1][:], ids[i][:]) >= 0) {
			return false
		}
	}
	return true
}

// check enforces every rule of §Content and §Kinds but the encoding's.
func (c *Content) check() bool {
	if c.MessageID == (ID{}) || c.ExpireAfter > MaxTimer || c.SentAt.Before(time.UnixMilli(0)) {
		return false
	}
	if len(c.Token) != 0 && len(c.Token) != TokenSize {
		return false
	}
	zeroText := c.Text == "" && len(c.Mentions) == 0
	targeted := c.Target != (ID{})
	switch c.Kind {
	case Text:
		return validText(c.Text, 1) && increasing(c.Mentions, MaxMentions) && !targeted &&
			c.Targets == nil && c.Reaction == "" && c.File == nil && c.Timer == 0
	case Reply, Edit:
		return validText(c.Text, 1) && increasing(c.Mentions, MaxMentions) && targeted &&
			c.Targets == nil && c.Reaction == "" && c.File == nil && c.Timer == 0
	case Delete:
		return zeroText && targeted && c.Targets == nil && c.Reaction == "" && c.File == nil && c.Timer == 0
	case Reaction:
		return zeroText && targeted && c.Targets == nil && len(c.Reaction) <= MaxReaction &&
			utf8.ValidString(c.Reaction) && c.File == nil && c.Timer == 0
	case Delivered, Read:
		return zeroText && !targeted && len(c.Targets) > 0 && increasing(c.Targets, MaxTargets) &&
			c.Reaction == "" && c.File == nil && c.Timer == 0
	case Attachment:
		f := c.File
		return f != nil && validText(c.Text, 0) && increasing(c.Mentions, MaxMentions) && !targeted &&
			c.Targets == nil && c.Reaction == "" && c.Timer == 0 &&
			len(f.Name) >= 1 && len(f.Name) <= MaxName && utf8.ValidString(f.Name) &&
			len(f.MediaType) >= 1 && len(f.MediaType) <= MaxMediaType && utf8.ValidString(f.MediaType) &&
			len(f.Ref) >= 1 && len(f.Ref) <= MaxRef
	case Timer:
		return zeroText && !targeted && c.Targets == nil && c.Reaction == "" && c.File == nil && c.Timer <= MaxTimer
	}
	return false
}

//	struct {
//	    uint8  version = 1;
//	    ContentKind kind;
//	    opaque message_id[16];
//	    uint64 sent_at;              /* ms since 1970, < 2^63 */
//	    uint32 expire_after;         /* seconds, 0..MaxTimer */
//	    opaque conversation<0..16>;  /* empty, or a user id (sync transcript) */
//	    opaque delivery_token<0..64>;/* empty, or mailbox[32] || token[32] */
//	    select (kind) { ... } body;  /* §Kinds */
//	} Content;

// Marshal encodes c (§Content). It fails with ErrMalformed for a Content
// that breaks a rule of §Kinds.
func (c *Content) Marshal() ([]byte, error) {
	if !c.check() {
		return nil, ErrMalformed
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, 128+len(c.Text)))
	b.AddUint8(Version)
	b.AddUint8(uint8(c.Kind))
	b.AddBytes(c.MessageID[:])
	b.AddUint64(uint64(c.SentAt.UnixMilli()))
	b.AddUint32(c.ExpireAfter)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
		if c.Conversation != (ID{}) {
			b.AddBytes(c.Conversation[:])
		}
	})
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c.Token) })
	addText := func() {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(c.Text)) })
		addIDs(b, c.Mentions)
	}
	switch c.Kind {
	case Text:
		addText()
	case Reply, Edit:
		b.AddBytes(c.Target[:])
		addText()
	case Delete:
		b.AddBytes(c.Target[:])
	case Reaction:
		b.AddBytes(c.Target[:])
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(c.Reaction)) })
	case Delivered, Read:
		addIDs(b, c.Targets)
	case Attachment:
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(c.File.Name)) })
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(c.File.MediaType)) })
		b.AddUint64(c.File.Size)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c.File.Ref) })
		addText()
	case Timer:
		b.AddUint32(c.Timer)
	}
	out, err := b.Bytes()
	if err != nil {
		return nil, ErrMalformed
	}
	return out, nil
}

func addIDs(b *cryptobyte.Builder, ids []ID) {
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, id := range ids {
			b.AddBytes(id[:])
		}
	})
}

func readIDs(s *cryptobyte.String, max int) ([]ID, bool) {
	var v cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&v) || len(v)%IDSize != 0 || len(v) > max*IDSize {
		return nil, false
	}
	if len(v) == 0 {
		return nil, true
	}
	ids := make([]ID, len(v)/IDSize)
	for i := range ids {
		v.CopyBytes(ids[i][:])
	}
	return ids, true
}

// Parse decodes a Content strictly (§Content): an unknown version or kind,
// a length out of bounds, invalid UTF-8, unsorted or repeated ids, a
// field the kind does not allow, or a trailing byte is ErrMalformed.
func Parse(data []byte) (*Content, error) {
	if len(data) > MaxSize {
		return nil, ErrMalformed
	}
	s := cryptobyte.String(data)
	var ver, kind uint8
	var sent uint64
	var conv, tok cryptobyte.String
	c := &Content{}
	if !s.ReadUint8(&ver) || ver != Version || !s.ReadUint8(&kind) || !s.CopyBytes(c.MessageID[:]) ||
		!s.ReadUint64(&sent) || sent > maxSentAtMS || !s.ReadUint32(&c.ExpireAfter) ||
		!s.ReadUint8LengthPrefixed(&conv) || (len(conv) != 0 && len(conv) != IDSize) ||
		!s.ReadUint8LengthPrefixed(&tok) || (len(tok) != 0 && len(tok) != TokenSize) {
		return nil, ErrMalformed
	}
	c.Kind = Kind(kind)
	c.SentAt = time.UnixMilli(int64(sent)).UTC()
	if len(conv) == IDSize {
		copy(c.Conversation[:], conv)
		if c.Conversation == (ID{}) {
			return nil, ErrMalformed
		}
	}
	if len(tok) > 0 {
		c.Token = bytes.Clone(tok)
	}
	readText := func() bool {
		var t cryptobyte.String
		if !s.ReadUint16LengthPrefixed(&t) {
			return false
		}
		c.Text = string(t)
		var ok bool
		c.Mentions, ok = readIDs(&s, MaxMentions)
		return ok
	}
	ok := true
	switch c.Kind {
	case Text:
		ok = readText()
	case Reply, Edit:
		ok = s.CopyBytes(c.Target[:]) && readText()
	case Delete:
		ok = s.CopyBytes(c.Target[:])
	case Reaction:
		var r cryptobyte.String
		ok = s.CopyBytes(c.Target[:]) && s.ReadUint8LengthPrefixed(&r)
		c.Reaction = string(r)
	case Delivered, Read:
		c.Targets, ok = readIDs(&s, MaxTargets)
	case Attachment:
		var name, mt, ref cryptobyte.String
		f := &File{}
		ok = s.ReadUint8LengthPrefixed(&name) && s.ReadUint8LengthPrefixed(&mt) && s.ReadUint64(&f.Size) &&
			s.ReadUint16LengthPrefixed(&ref) && readText()
		f.Name, f.MediaType, f.Ref = string(name), string(mt), bytes.Clone(ref)
		c.File = f
	case Timer:
		ok = s.ReadUint32(&c.Timer)
	default:
		ok = false
	}
	if !ok || !s.Empty() || !c.check() {
		return nil, ErrMalformed
	}
	return c, nil
}
