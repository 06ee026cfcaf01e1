package service

import (
	"errors"

	"github.com/moat-im/moat/keyserver/org"
	"golang.org/x/crypto/cryptobyte"
)

// The encoding of a lodged record's value (docs/spec/directory.md
// §Lodged approvals):
//
//	struct {
//	    uint8 version = 1;
//	    opaque subject[16];           // the user of device approvals, else zero
//	    opaque proposal<0..2^24-1>;   // a key rotation's proposed bundle, else empty
//	    opaque approval<1..2^16-1><0..2^24-1>; // Approval encodings, distinct signers
//	} LodgedApprovals;
//
// At most maxLodgedApprovals approvals; a record with none holds a key
// rotation's proposal before its first approval.

const lodgedVersion = 1

// maxLodgedApprovals bounds the approvals of one lodged record: an admin
// roster has at most 255 admins, and each approves once.
const maxLodgedApprovals = 255

var errLodgedMalformed = errors.New("service: malformed lodged record")

// lodgedApprovals is a lodged record's value.
type lodgedApprovals struct {
	subject   [16]byte
	proposal  []byte
	approvals []*org.Approval
}

func (l *lodgedApprovals) marshal() ([]byte, error) {
	if len(l.approvals) > maxLodgedApprovals || len(l.proposal) >= 1<<24 {
		return nil, errLodgedMalformed
	}
	var b cryptobyte.Builder
	b.AddUint8(lodgedVersion)
	b.AddBytes(l.subject[:])
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(l.proposal) })
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, a := range l.approvals {
			enc, err := a.Marshal()
			if err != nil {
				b.SetError(err)
				return
			}
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(enc) })
		}
	})
	return b.Bytes()
}

// parseLodgedApprovals parses a lodged record's value strictly: each
// approval parses (org.ParseApproval), signers are distinct, nothing
// trails.
func parseLodgedApprovals(data []byte) (*lodgedApprovals, error) {
	s := cryptobyte.String(data)
	l := &lodgedApprovals{}
	var ver uint8
	var prop, aps cryptobyte.String
	if !s.ReadUint8(&ver) || ver != lodgedVersion || !s.CopyBytes(l.subject[:]) ||
		!s.ReadUint24LengthPrefixed(&prop) || !s.ReadUint24LengthPrefixed(&aps) || !s.Empty() {
		return nil, errLodgedMalformed
	}
	if len(prop) > 0 {
		l.proposal = append([]byte{}, prop...)
	}
	seen := map[[16]byte]bool{}
	for !aps.Empty() {
		var enc cryptobyte.String
		if !aps.ReadUint16LengthPrefixed(&enc) || len(enc) == 0 {
			return nil, errLodgedMalformed
		}
		a, err := org.ParseApproval(enc)
		if err != nil || seen[a.Signer] || len(l.approvals) == maxLodgedApprovals {
			return nil, errLodgedMalformed
		}
		seen[a.Signer] = true
		l.approvals = append(l.approvals, a)
	}
	return l, nil
}
