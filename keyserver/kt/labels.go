package kt

import (
	"crypto/sha256"
	"errors"
	"unicode/utf8"

	"github.com/moat-im/moat/crypto/vrf"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/vmap"
)

// Type bytes (docs/spec/directory.md §Type bytes). Every encoding of this
// package starts with one of them, then its format byte. The
// range 0x50–0x5f is reserved for this package; the repository-wide registry
// is in the spec.
const (
	typeValueRecord         = 0x50
	typeEpochEntry          = 0x51
	typeLookupResponse      = 0x52
	typeHistoryResponse     = 0x53
	typeConsistencyResponse = 0x54
	typeClientState         = 0x55
	typeTransitionsResponse = 0x56
	typeMonitorResponse     = 0x57

	format1 = 0x01
	// format2 is the format of ConsistencyResponse (with the last entry).
	format2 = 0x02
	// format3 is the format of LookupResponse and HistoryResponse (with
	// the record proof, and the anchored inclusion proof of
	// docs/spec/directory.md §Anchored inclusion).
	format3 = 0x03
	// format4 is the format of ClientState (with the pinned bundle, the
	// CA history, record epochs, verified epochs, verified signatures and
	// the held entry).
	format4 = 0x04
)

// Domain-separation labels (docs/spec/directory.md §Domain separation), all
// in one place (STYLE 6). Each is followed by 0x00 where it is used. None is
// a prefix of another, nor of a label of crypto/internal/label,
// keyserver/org or crypto/tlog (TestLabelsDistinct).
const (
	// labelUser starts the VRF input of a user label.
	labelUser = "moat/v1/kt/user"
	// labelOrg starts the VRF input of an org label.
	labelOrg = "moat/v1/kt/org"
	// labelCommitment starts the hash input of a value commitment.
	labelCommitment = "moat/v1/kt/commitment"
	// labelNonce starts the HMAC input that derives a record's nonce.
	labelNonce = "moat/v1/kt/nonce"
)

// MaxOrgLabelName is the longest org label name, in bytes: the VRF input
// encodes it with a one-byte length.
const MaxOrgLabelName = 255

// errOrgLabelName is returned for an org label name that cannot be encoded.
var errOrgLabelName = errors.New("kt: org label name must be 1 to 255 bytes of UTF-8")

// UserAlpha returns the VRF input of a user's label
// (docs/spec/directory.md §Labels):
//
//	"moat/v1/kt/user" || 0x00 || tenant[16] || user[16]
func UserAlpha(tenant org.TenantID, user org.UserID) []byte {
	a := make([]byte, 0, len(labelUser)+1+32)
	a = append(a, labelUser...)
	a = append(a, 0)
	a = append(a, tenant[:]...)
	return append(a, user[:]...)
}

// OrgAlpha returns the VRF input of an org label, such as
// org.OrgLabelTrustBundle (docs/spec/directory.md §Labels):
//
//	"moat/v1/kt/org" || 0x00 || tenant[16] || uint8 len || name
func OrgAlpha(tenant org.TenantID, name string) ([]byte, error) {
	if len(name) == 0 || len(name) > MaxOrgLabelName || !utf8.ValidString(name) {
		return nil, errOrgLabelName
	}
	a := make([]byte, 0, len(labelOrg)+1+16+1+len(name))
	a = append(a, labelOrg...)
	a = append(a, 0)
	a = append(a, tenant[:]...)
	a = append(a, byte(len(name)))
	return append(a, name...), nil
}

// Alpha returns the VRF input of an org.Label, as org.Tenant.Publish
// returns them: a user label or an org label.
func Alpha(tenant org.TenantID, l org.Label) ([]byte, error) {
	switch {
	case l.User != (org.UserID{}) && l.Org == "":
		return UserAlpha(tenant, l.User), nil
	case l.User == (org.UserID{}) && l.Org != "":
		return OrgAlpha(tenant, l.Org)
	}
	return nil, errors.New("kt: a label names exactly one of a user or an org label")
}

// LabelFromOutput returns the map label of a VRF output beta: its first
// 32 bytes.
func LabelFromOutput(beta []byte) vmap.Label {
	return vmap.Label(beta[:vmap.LabelSize])
}

// EvaluateLabel is the directory's side of §Labels: it returns the map label
// of alpha under the directory's VRF key, and the VRF proof that clients
// verify. Both are deterministic, so a directory may cache them.
func EvaluateLabel(sk *vrf.PrivateKey, alpha []byte) (vmap.Label, []byte) {
	pi := vrf.Prove(sk, alpha)
	beta, err := vrf.ProofToHash(pi)
	if err != nil {
		panic("kt: VRF proof from Prove does not decode: " + err.Error())
	}
	return LabelFromOutput(beta), pi
}

// VerifyLabel is the client's side of §Labels: it checks the VRF proof pi
// for alpha under the directory's pinned VRF key and returns the label.
// A failure wraps vrf.ErrInvalidProof.
func VerifyLabel(pk *vrf.PublicKey, alpha, pi []byte) (vmap.Label, error) {
	beta, err := vrf.Verify(pk, alpha, pi)
	if err != nil {
		return vmap.Label{}, err
	}
	return LabelFromOutput(beta), nil
}

// labelled returns label || 0x00 || parts...
func labelled(label string, parts ...[]byte) []byte {
	n := len(label) + 1
	for _, p := range parts {
		n += len(p)
	}
	m := make([]byte, 0, n)
	m = append(m, label...)
	m = append(m, 0)
	for _, p := range parts {
		m = append(m, p...)
	}
	return m
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
