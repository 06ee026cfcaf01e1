package bundle

// Wire formats of docs/spec/bundle.md, read and written with cryptobyte
// and parsed strictly: sizes checked before parsing, flags 0 or 1, lists in
// strictly increasing id order, no trailing bytes.
//
//	struct { uint32 id; uint64 created; opaque key[33]; opaque signature[64]; } SignedPrekeyItem;
//	struct { uint32 id; opaque key[33]; opaque signature[64]; } OneTimePrekeyItem;
//	struct { uint32 id; uint64 created; uint8 last_resort; opaque key[1185]; opaque signature[64]; } KEMPrekeyItem;
//
//	struct {
//	    uint8  type = 0x2d;
//	    uint8  version = 1;
//	    uint8  has_signed_prekey;
//	    select (has_signed_prekey) { case 1: SignedPrekeyItem signed_prekey; };
//	    OneTimePrekeyItem one_time_prekeys<0..2^16-1>;
//	    KEMPrekeyItem kem_prekeys<0..2^24-1>;
//	    uint8  has_sealed_sender_key;
//	    select (has_sealed_sender_key) { case 1: opaque sealed_sender_key[1303]; };
//	    opaque key_packages<0..2^24-1>;     /* KeyPackageItems (keypackage.go) */
//	} PrekeyUpload;
//
//	struct {
//	    uint8  type = 0x2e;
//	    uint8  version = 1;
//	    opaque bundle<1..2^16-1>;           /* pqxdh Bundle */
//	    select (bundle has a one-time prekey) { case yes: opaque one_time_prekey_signature[64]; };
//	    opaque sealed_sender_key[1303];
//	} BundleResponse;

import (
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/pqxdh"
	"github.com/moat-im/moat/crypto/sealed"
	"golang.org/x/crypto/cryptobyte"
)

const (
	typeUpload   = 0x2d
	typeResponse = 0x2e
	version1     = 1

	// MaxUploadSize bounds an upload; larger input is refused unparsed.
	MaxUploadSize = 1 << 20
	// MaxOneTimePrekeys, MaxKEMPrekeys and MaxKeyPackages bound the items
	// of one upload.
	MaxOneTimePrekeys = 100
	MaxKEMPrekeys     = 100
	MaxKeyPackages    = 100

	x25519Tagged   = 33
	kemTagged      = 1 + keys.KEMPublicKeySize
	sigSize        = 64
	spkItemSize    = 4 + 8 + x25519Tagged + sigSize
	opkItemSize    = 4 + x25519Tagged + sigSize
	kemItemSize    = 4 + 8 + 1 + kemTagged + sigSize
	maxUnix        = 1<<63 - 1
	maxBundleBytes = 1<<16 - 1
)

// Upload is a PrekeyUpload (docs/spec/bundle.md §Upload). Every field is
// optional, but an upload carries at least one item.
type Upload struct {
	SignedPrekey    *keys.SignedPrekey
	OneTimePrekeys  []*keys.SignedOneTimePrekey // strictly increasing ids
	KEMPrekeys      []*keys.KEMPrekey           // strictly increasing ids; at most one last-resort
	SealedSenderKey *keys.SealedSenderKey
	KeyPackages     []*KeyPackageItem // MLS KeyPackages, each signed by the identity key
}

func (u *Upload) check() bool {
	if u.SignedPrekey == nil && len(u.OneTimePrekeys) == 0 && len(u.KEMPrekeys) == 0 && u.SealedSenderKey == nil && len(u.KeyPackages) == 0 {
		return false
	}
	if len(u.OneTimePrekeys) > MaxOneTimePrekeys || len(u.KEMPrekeys) > MaxKEMPrekeys || len(u.KeyPackages) > MaxKeyPackages {
		return false
	}
	for i, p := range u.OneTimePrekeys {
		if p == nil || p.Key == nil || len(p.Signature) != sigSize || (i > 0 && p.ID <= u.OneTimePrekeys[i-1].ID) {
			return false
		}
	}
	lastResort := 0
	for i, p := range u.KEMPrekeys {
		if p == nil || p.Key == nil || len(p.Signature) != sigSize || !validTime(p.Created) || (i > 0 && p.ID <= u.KEMPrekeys[i-1].ID) {
			return false
		}
		if p.LastResort {
			lastResort++
		}
	}
	if lastResort > 1 {
		return false
	}
	if p := u.SignedPrekey; p != nil && (p.Key == nil || len(p.Signature) != sigSize || !validTime(p.Created)) {
		return false
	}
	for _, kp := range u.KeyPackages {
		if kp == nil || len(kp.KeyPackage) == 0 || len(kp.KeyPackage) > MaxKeyPackageSize || len(kp.Signature) != sigSize {
			return false
		}
	}
	return true
}

func validTime(t time.Time) bool { return t.Unix() >= 0 && t.Nanosecond() == 0 }

// Marshal returns the PrekeyUpload encoding.
func (u *Upload) Marshal() ([]byte, error) {
	if !u.check() {
		return nil, ErrMalformed
	}
	var ssk []byte
	if u.SealedSenderKey != nil {
		var err error
		if ssk, err = sealed.MarshalKeyRecord(u.SealedSenderKey); err != nil {
			return nil, ErrMalformed
		}
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddUint8(typeUpload)
	b.AddUint8(version1)
	if p := u.SignedPrekey; p != nil {
		b.AddUint8(1)
		b.AddUint32(p.ID)
		b.AddUint64(uint64(p.Created.Unix()))
		b.AddBytes(p.Key.Bytes())
		b.AddBytes(p.Signature)
	} else {
		b.AddUint8(0)
	}
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, p := range u.OneTimePrekeys {
			b.AddUint32(p.ID)
			b.AddBytes(p.Key.Bytes())
			b.AddBytes(p.Signature)
		}
	})
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, p := range u.KEMPrekeys {
			b.AddUint32(p.ID)
			b.AddUint64(uint64(p.Created.Unix()))
			b.AddUint8(boolByte(p.LastResort))
			b.AddBytes(p.Key.Bytes())
			b.AddBytes(p.Signature)
		}
	})
	if ssk != nil {
		b.AddUint8(1)
		b.AddBytes(ssk)
	} else {
		b.AddUint8(0)
	}
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, kp := range u.KeyPackages {
			kp.marshal(b)
		}
	})
	out, err := b.Bytes()
	if err != nil || len(out) > MaxUploadSize {
		return nil, ErrMalformed
	}
	return out, nil
}

// ParseUpload parses a PrekeyUpload strictly. It does not verify the
// signatures: Verify does. It does not retain data.
func ParseUpload(data []byte) (*Upload, error) {
	u, err := parseUpload(data)
	if err != nil {
		return nil, ErrMalformed
	}
	return u, nil
}

func parseUpload(data []byte) (*Upload, error) {
	if len(data) > MaxUploadSize {
		return nil, ErrMalformed
	}
	s := cryptobyte.String(data)
	u := new(Upload)
	var typ, ver, has uint8
	if !s.ReadUint8(&typ) || typ != typeUpload || !s.ReadUint8(&ver) || ver != version1 || !readBool(&s, &has) {
		return nil, ErrMalformed
	}
	if has == 1 {
		var id uint32
		var created uint64
		var key, sig []byte
		if !s.ReadUint32(&id) || !s.ReadUint64(&created) || created > maxUnix ||
			!s.ReadBytes(&key, x25519Tagged) || !s.ReadBytes(&sig, sigSize) {
			return nil, ErrMalformed
		}
		k, err := keys.ParseSignedPrekeyPublicKey(key)
		if err != nil {
			return nil, err
		}
		u.SignedPrekey = &keys.SignedPrekey{ID: id, Created: time.Unix(int64(created), 0).UTC(), Key: k, Signature: clone(sig)}
	}
	var opks cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&opks) || len(opks)%opkItemSize != 0 || len(opks)/opkItemSize > MaxOneTimePrekeys {
		return nil, ErrMalformed
	}
	for !opks.Empty() {
		var id uint32
		var key, sig []byte
		opks.ReadUint32(&id)
		opks.ReadBytes(&key, x25519Tagged)
		opks.ReadBytes(&sig, sigSize)
		k, err := keys.ParseOneTimePrekeyPublicKey(key)
		if err != nil {
			return nil, err
		}
		u.OneTimePrekeys = append(u.OneTimePrekeys, &keys.SignedOneTimePrekey{ID: id, Key: k, Signature: clone(sig)})
	}
	var kems cryptobyte.String
	if !s.ReadUint24LengthPrefixed(&kems) || len(kems)%kemItemSize != 0 || len(kems)/kemItemSize > MaxKEMPrekeys {
		return nil, ErrMalformed
	}
	for !kems.Empty() {
		var id uint32
		var created uint64
		var lr uint8
		var key, sig []byte
		kems.ReadUint32(&id)
		kems.ReadUint64(&created)
		if !readBool(&kems, &lr) || created > maxUnix {
			return nil, ErrMalformed
		}
		kems.ReadBytes(&key, kemTagged)
		kems.ReadBytes(&sig, sigSize)
		k, err := keys.ParseKEMPrekeyPublicKey(key)
		if err != nil {
			return nil, err
		}
		u.KEMPrekeys = append(u.KEMPrekeys, &keys.KEMPrekey{ID: id, Created: time.Unix(int64(created), 0).UTC(), LastResort: lr == 1, Key: k, Signature: clone(sig)})
	}
	if !readBool(&s, &has) {
		return nil, ErrMalformed
	}
	if has == 1 {
		var rec []byte
		if !s.ReadBytes(&rec, sealed.KeyRecordSize) {
			return nil, ErrMalformed
		}
		k, err := sealed.ParseKeyRecord(rec)
		if err != nil {
			return nil, err
		}
		u.SealedSenderKey = k
	}
	var kps cryptobyte.String
	if !s.ReadUint24LengthPrefixed(&kps) || !s.Empty() {
		return nil, ErrMalformed
	}
	for !kps.Empty() {
		if len(u.KeyPackages) == MaxKeyPackages {
			return nil, ErrMalformed
		}
		kp, err := readKeyPackageItem(&kps)
		if err != nil {
			return nil, err
		}
		u.KeyPackages = append(u.KeyPackages, kp)
	}
	if !u.check() {
		return nil, ErrMalformed
	}
	return u, nil
}

// Response is a BundleResponse (docs/spec/bundle.md §Served bundles).
type Response struct {
	Bundle *pqxdh.Bundle
	// OneTimePrekeySignature is the identity signature of the bundle's
	// one-time prekey; present exactly when the bundle has one.
	OneTimePrekeySignature []byte
	SealedSenderKey        *keys.SealedSenderKey
}

// Marshal returns the BundleResponse encoding, as the relay serves it.
func (r *Response) Marshal() ([]byte, error) {
	if r.Bundle == nil || r.SealedSenderKey == nil || (r.Bundle.OneTimePrekey != nil) != (r.OneTimePrekeySignature != nil) ||
		(r.OneTimePrekeySignature != nil && len(r.OneTimePrekeySignature) != sigSize) {
		return nil, ErrMalformed
	}
	bb, err := r.Bundle.Marshal()
	if err != nil {
		return nil, ErrMalformed
	}
	ssk, err := sealed.MarshalKeyRecord(r.SealedSenderKey)
	if err != nil {
		return nil, ErrMalformed
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddUint8(typeResponse)
	b.AddUint8(version1)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(bb) })
	b.AddBytes(r.OneTimePrekeySignature)
	b.AddBytes(ssk)
	return b.Bytes()
}

// ParseResponse parses a BundleResponse strictly. It verifies no
// signature: Open does.
func ParseResponse(data []byte) (*Response, error) {
	s := cryptobyte.String(data)
	var typ, ver uint8
	var bb cryptobyte.String
	if len(data) > 4+maxBundleBytes+sigSize+sealed.KeyRecordSize ||
		!s.ReadUint8(&typ) || typ != typeResponse || !s.ReadUint8(&ver) || ver != version1 ||
		!s.ReadUint16LengthPrefixed(&bb) || len(bb) == 0 {
		return nil, ErrMalformed
	}
	b, err := pqxdh.ParseBundle(bb)
	if err != nil {
		return nil, ErrMalformed
	}
	r := &Response{Bundle: b}
	if b.OneTimePrekey != nil {
		var sig []byte
		if !s.ReadBytes(&sig, sigSize) {
			return nil, ErrMalformed
		}
		r.OneTimePrekeySignature = clone(sig)
	}
	var rec []byte
	if !s.ReadBytes(&rec, sealed.KeyRecordSize) || !s.Empty() {
		return nil, ErrMalformed
	}
	if r.SealedSenderKey, err = sealed.ParseKeyRecord(rec); err != nil {
		return nil, ErrMalformed
	}
	return r, nil
}

func readBool(s *cryptobyte.String, out *uint8) bool { return s.ReadUint8(out) && *out <= 1 }

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
