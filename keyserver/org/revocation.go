package org

import (
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

// RevocationReason says why a device was revoked.
type RevocationReason uint8

// Revocation reasons (docs/spec/org.md §Revocation).
const (
	ReasonUnspecified RevocationReason = 0x00 // no reason given
	ReasonLost        RevocationReason = 0x01 // the device was lost
	ReasonCompromised RevocationReason = 0x02 // its keys may be known to someone else
	ReasonUserRemoved RevocationReason = 0x03 // its user was removed
	ReasonRetired     RevocationReason = 0x04 // taken out of service
)

func (r RevocationReason) valid() bool { return r <= ReasonRetired }

// Revocation is the org CA's signed statement that a device is revoked
// (docs/spec/org.md §Revocation): every certificate ever issued to it, all
// listed by serial, is void from RevokedAt. The relay stops delivering to
// the device, and clients reject it (T45).
type Revocation struct {
	Tenant    TenantID
	User      UserID
	Device    DeviceID
	Serials   []uint64 // strictly increasing, at least one
	RevokedAt time.Time
	Reason    RevocationReason
	Signature []byte
}

//	enum {
//	    unspecified(0x00), lost(0x01), compromised(0x02),
//	    user_removed(0x03), retired(0x04), (255)
//	} RevocationReason;
//
//	struct {
//	    uint8  type = 0x3a;
//	    uint8  version = 1;
//	    opaque tenant[16];
//	    opaque user[16];
//	    opaque device[16];
//	    uint64 serials<8..2^16-1>;      /* strictly increasing */
//	    uint64 revoked_at;
//	    RevocationReason reason;
//	} RevocationBody;
//
//	struct { RevocationBody body; opaque signature[3373]; } Revocation;

func checkSerials(s []uint64) bool {
	if len(s) == 0 || len(s) > (1<<16-1)/8 {
		return false
	}
	for i, v := range s {
		if v == 0 || (i > 0 && s[i-1] >= v) {
			return false
		}
	}
	return true
}

func (r *Revocation) body() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		if r.Tenant.IsZero() || r.User.IsZero() || r.Device.IsZero() || !checkSerials(r.Serials) || !r.Reason.valid() {
			b.SetError(errEncode)
			return
		}
		b.AddUint8(typeRevocation)
		b.AddUint8(version1)
		addID(b, r.Tenant[:])
		addID(b, r.User[:])
		addID(b, r.Device[:])
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, s := range r.Serials {
				b.AddUint64(s)
			}
		})
		addTime(b, r.RevokedAt)
		b.AddUint8(uint8(r.Reason))
	})
}

// Marshal returns the Revocation encoding.
func (r *Revocation) Marshal() ([]byte, error) { return marshalSigned(r.body, r.Signature) }

// Verify checks that r is tenant's and signed by ca.
func (r *Revocation) Verify(ca *keys.OrgPublicKey, tenant TenantID) error {
	if r.Tenant != tenant {
		return ErrWrongTenant
	}
	body, err := r.body()
	if err != nil {
		return ErrMalformed
	}
	return verifyCA(ca, labelRevocation, body, r.Signature)
}

// Revokes reports whether r revokes the certificate with serial.
func (r *Revocation) Revokes(serial uint64) bool {
	for _, s := range r.Serials {
		if s == serial {
			return true
		}
	}
	return false
}

// ParseRevocation parses a Revocation encoding strictly.
func ParseRevocation(data []byte) (*Revocation, error) {
	return parseSigned("revocation", data, func(s *cryptobyte.String, sig []byte) (*Revocation, error) {
		r := &Revocation{Signature: sig}
		var typ, ver, reason uint8
		var serials cryptobyte.String
		if !s.ReadUint8(&typ) || typ != typeRevocation || !s.ReadUint8(&ver) || ver != version1 ||
			!readID(s, (*[16]byte)(&r.Tenant)) || !readID(s, (*[16]byte)(&r.User)) || !readID(s, (*[16]byte)(&r.Device)) ||
			!s.ReadUint16LengthPrefixed(&serials) || !readTime(s, &r.RevokedAt) || !s.ReadUint8(&reason) {
			return nil, ErrMalformed
		}
		for !serials.Empty() {
			var v uint64
			if !serials.ReadUint64(&v) {
				return nil, ErrMalformed
			}
			r.Serials = append(r.Serials, v)
		}
		r.Reason = RevocationReason(reason)
		if r.Tenant.IsZero() || r.User.IsZero() || r.Device.IsZero() || !checkSerials(r.Serials) || !r.Reason.valid() {
			return nil, ErrMalformed
		}
		return r, nil
	})
}

// WipeInstruction tells one revoked device to erase its keys and local
// data (§Wipe instructions). It names the device and its latest
// certificate, so no other device acts on it.
type WipeInstruction struct {
	Tenant    TenantID
	User      UserID
	Device    DeviceID
	Serial    uint64
	IssuedAt  time.Time
	Signature []byte
}

//	struct {
//	    uint8  type = 0x3b;
//	    uint8  version = 1;
//	    opaque tenant[16];
//	    opaque user[16];
//	    opaque device[16];
//	    uint64 serial;
//	    uint64 issued_at;
//	} WipeInstructionBody;
//
//	struct { WipeInstructionBody body; opaque signature[3373]; } WipeInstruction;

func (w *WipeInstruction) body() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		if w.Tenant.IsZero() || w.User.IsZero() || w.Device.IsZero() || w.Serial == 0 {
			b.SetError(errEncode)
		}
		b.AddUint8(typeWipeInstruction)
		b.AddUint8(version1)
		addID(b, w.Tenant[:])
		addID(b, w.User[:])
		addID(b, w.Device[:])
		b.AddUint64(w.Serial)
		addTime(b, w.IssuedAt)
	})
}

// Marshal returns the WipeInstruction encoding.
func (w *WipeInstruction) Marshal() ([]byte, error) { return marshalSigned(w.body, w.Signature) }

// Verify is the check a device runs before wiping itself: the instruction
// is for its tenant (ErrWrongTenant), for its own device id and
// certificate serial (ErrWrongSubject), and signed by the CA it trusts.
func (w *WipeInstruction) Verify(ca *keys.OrgPublicKey, tenant TenantID, device DeviceID, serial uint64) error {
	if w.Tenant != tenant {
		return ErrWrongTenant
	}
	if w.Device != device || w.Serial != serial {
		return ErrWrongSubject
	}
	body, err := w.body()
	if err != nil {
		return ErrMalformed
	}
	return verifyCA(ca, labelWipeInstruction, body, w.Signature)
}

// ParseWipeInstruction parses a WipeInstruction encoding strictly.
func ParseWipeInstruction(data []byte) (*WipeInstruction, error) {
	return parseSigned("wipe instruction", data, func(s *cryptobyte.String, sig []byte) (*WipeInstruction, error) {
		w := &WipeInstruction{Signature: sig}
		var typ, ver uint8
		if !s.ReadUint8(&typ) || typ != typeWipeInstruction || !s.ReadUint8(&ver) || ver != version1 ||
			!readID(s, (*[16]byte)(&w.Tenant)) || !readID(s, (*[16]byte)(&w.User)) || !readID(s, (*[16]byte)(&w.Device)) ||
			!s.ReadUint64(&w.Serial) || !readTime(s, &w.IssuedAt) {
			return nil, ErrMalformed
		}
		if w.Tenant.IsZero() || w.User.IsZero() || w.Device.IsZero() || w.Serial == 0 {
			return nil, ErrMalformed
		}
		return w, nil
	})
}
