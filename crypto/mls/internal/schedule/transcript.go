package schedule

import (
	"github.com/moat-im/moat/crypto/mls/internal/suite"
	"github.com/moat-im/moat/crypto/mls/internal/wire"
	"golang.org/x/crypto/cryptobyte"
)

// ConfirmedTranscriptHash computes (§8.2)
//
//	confirmed_transcript_hash_[epoch] =
//	    Hash(interim_transcript_hash_[epoch - 1] ||
//	         ConfirmedTranscriptHashInput_[epoch])
//
// where confirmedInput is the encoded ConfirmedTranscriptHashInput of the
// Commit (wire_format, FramedContent, signature<V>; see
// mls.AuthenticatedContent.ConfirmedTranscriptHashInput). interim is empty
// for the first Commit of a group.
func ConfirmedTranscriptHash(s *suite.Suite, interim, confirmedInput []byte) []byte {
	buf := make([]byte, 0, len(interim)+len(confirmedInput))
	buf = append(buf, interim...)
	buf = append(buf, confirmedInput...)
	return s.Hash(buf)
}

// InterimTranscriptHash computes (§8.2)
//
//	interim_transcript_hash_[epoch] =
//	    Hash(confirmed_transcript_hash_[epoch] ||
//	         InterimTranscriptHashInput_[epoch])
//
// where InterimTranscriptHashInput is struct { MAC confirmation_tag; },
// that is confirmation_tag<V>.
func InterimTranscriptHash(s *suite.Suite, confirmed, confirmationTag []byte) ([]byte, error) {
	b := cryptobyte.NewBuilder(make([]byte, 0, len(confirmed)+len(confirmationTag)+4))
	b.AddBytes(confirmed)
	wire.AddVarBytes(b, confirmationTag)
	in, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	return s.Hash(in), nil
}
