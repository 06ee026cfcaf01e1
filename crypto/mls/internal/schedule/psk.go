package schedule

import (
	"errors"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
	"golang.org/x/crypto/cryptobyte"
)

// MaxPSKs bounds the number of PSKs in one psk_secret: PSKLabel carries
// index and count as uint16 (§8.4).
const MaxPSKs = 0xffff

// ErrTooManyPSKs is returned by PSKSecret for more than MaxPSKs inputs.
var ErrTooManyPSKs = errors.New("mls/schedule: too many PSKs")

const labelDerivedPSK = "derived psk"

// PSK is one pre-shared key injected into the key schedule (§8.4).
type PSK struct {
	// ID is the encoded PreSharedKeyID (mls.PreSharedKeyID.Encode), with
	// its psk_nonce.
	ID []byte
	// Value is the PSK itself: an external PSK, or the resumption_psk of
	// the group and epoch that ID names.
	Value []byte
}

// PSKSecret computes psk_secret from the PSKs in the order the Commit or
// GroupSecrets lists them (§8.4):
//
//	psk_extracted_[i] = KDF.Extract(0, psk_[i])
//	psk_input_[i]     = ExpandWithLabel(psk_extracted_[i], "derived psk",
//	                                    PSKLabel, KDF.Nh)
//	psk_secret_[0]    = 0
//	psk_secret_[i]    = KDF.Extract(psk_input_[i-1], psk_secret_[i-1])
//
// with PSKLabel = struct { PreSharedKeyID id; uint16 index; uint16 count; }.
// With no PSKs the result is the all-zero vector, which NewEpoch also
// accepts as nil.
func PSKSecret(s *suite.Suite, psks []PSK) ([]byte, error) {
	if len(psks) > MaxPSKs {
		return nil, ErrTooManyPSKs
	}
	secret := zeros(s)
	for i, p := range psks {
		extracted := s.Extract(zeros(s), p.Value)
		label, err := pskLabel(p.ID, uint16(i), uint16(len(psks)))
		if err != nil {
			return nil, err
		}
		input, err := s.ExpandWithLabel(extracted, labelDerivedPSK, label, s.Nh())
		suite.Zero(extracted)
		if err != nil {
			return nil, err
		}
		next := s.Extract(input, secret)
		suite.Zero(input)
		suite.Zero(secret)
		secret = next
	}
	return secret, nil
}

// pskLabel encodes PSKLabel: the PreSharedKeyID struct inline, then index
// and count.
func pskLabel(id []byte, index, count uint16) ([]byte, error) {
	b := cryptobyte.NewBuilder(make([]byte, 0, len(id)+4))
	b.AddBytes(id)
	b.AddUint16(index)
	b.AddUint16(count)
	return b.Bytes()
}
