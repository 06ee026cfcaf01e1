package relay

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"

	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/server/store/blob"
)

// Upload capability (docs/spec/attachments.md §Upload capability): the
// relay answers a creation with a fresh random upload token and stores
// only a hash of it, bound to the creating device, as the blob's tag.
// Appending, asking the state of and finalizing the upload need the token
// in the Moat-Upload-Token header; the blob id alone is only the download
// capability.

// HeaderUploadToken is the header that carries an upload token.
const HeaderUploadToken = "Moat-Upload-Token"

// UploadTokenSize is the size of an upload token.
const UploadTokenSize = 32

// uploadTokenTextSize is the length of its text: base64url, unpadded.
const uploadTokenTextSize = (UploadTokenSize*8 + 5) / 6

// uploadTagLabel separates the tag hash from every other SHA-256 in Moat.
const uploadTagLabel = "moat/v1/attachment-upload\x00"

// UploadToken is the secret capability of one upload. It is not logged:
// its String and GoString are redacted; FormatUploadToken gives its text.
type UploadToken [UploadTokenSize]byte

func (UploadToken) String() string   { return "UploadToken(redacted)" }
func (UploadToken) GoString() string { return "relay.UploadToken{redacted}" }

// newUploadToken draws a token from the secure random source.
func newUploadToken() UploadToken {
	var t UploadToken
	rand.Read(t[:])
	return t
}

var uploadTokenEncoding = base64.RawURLEncoding.Strict()

// FormatUploadToken returns the text of t for the Moat-Upload-Token header
// and the creation answer: 43 characters of unpadded base64url.
func FormatUploadToken(t *UploadToken) string { return uploadTokenEncoding.EncodeToString(t[:]) }

// ParseUploadToken parses the text of an upload token: exactly 43
// characters of unpadded base64url whose unused low bits are zero, so
// that a token has one text. Anything else is ErrMalformed.
func ParseUploadToken(s string) (UploadToken, error) {
	var t UploadToken
	if len(s) != uploadTokenTextSize {
		return t, ErrMalformed
	}
	n, err := uploadTokenEncoding.Decode(t[:], []byte(s))
	if err != nil || n != UploadTokenSize {
		return UploadToken{}, ErrMalformed
	}
	return t, nil
}

// uploadTag returns the tag stored with a blob created by the device a
// with token t: SHA-256(label || tenant || device || t)
// (docs/spec/attachments.md §Upload capability).
func uploadTag(a *deviceauth.Authenticated, t *UploadToken) blob.Tag {
	h := sha256.New()
	h.Write([]byte(uploadTagLabel))
	h.Write(a.Tenant[:])
	h.Write(a.Device[:])
	h.Write(t[:])
	var tag blob.Tag
	h.Sum(tag[:0])
	return tag
}

// uploadAllowed reports whether device a presenting token t may use the
// upload whose stored tag is tag, comparing in constant time. A blob
// without a tag (stored before tags existed) allows no one.
func uploadAllowed(a *deviceauth.Authenticated, t *UploadToken, tag blob.Tag) bool {
	want := uploadTag(a, t)
	return subtle.ConstantTimeCompare(want[:], tag[:]) == 1 && tag != (blob.Tag{})
}
