package mls

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/schedule"
	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

// TestTranscriptHashVectorsDecoded runs transcript-hashes.json through the
// full AuthenticatedContent decoder: the content is a Commit, its
// ConfirmedTranscriptHashInput gives confirmed_transcript_hash_after, its
// confirmation_tag is the MAC of that hash, and the interim hash follows.
// (crypto/mls/internal/schedule tests the hash functions on the raw bytes.)
func TestTranscriptHashVectorsDecoded(t *testing.T) {
	raw, err := os.ReadFile("testdata/transcript-hashes.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []struct {
		CipherSuite                  uint16   `json:"cipher_suite"`
		ConfirmationKey              hexBytes `json:"confirmation_key"`
		AuthenticatedContent         hexBytes `json:"authenticated_content"`
		InterimTranscriptHashBefore  hexBytes `json:"interim_transcript_hash_before"`
		ConfirmedTranscriptHashAfter hexBytes `json:"confirmed_transcript_hash_after"`
		InterimTranscriptHashAfter   hexBytes `json:"interim_transcript_hash_after"`
	}
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	passed, total := map[uint16]int{}, map[uint16]int{}
	for _, v := range vs {
		cs := v.CipherSuite
		total[cs]++
		s, err := suite.Get(suite.ID(cs))
		if err != nil {
			t.Errorf("suite %d: %v", cs, err)
			continue
		}
		ac, err := DecodeAuthenticatedContent(v.AuthenticatedContent)
		if err != nil {
			t.Errorf("suite %d: decoding: %v", cs, err)
			continue
		}
		if ac.Content.ContentType != ContentTypeCommit {
			t.Errorf("suite %d: content type %v, want commit", cs, ac.Content.ContentType)
			continue
		}
		in, err := ac.ConfirmedTranscriptHashInput()
		if err != nil {
			t.Errorf("suite %d: %v", cs, err)
			continue
		}
		confirmed := schedule.ConfirmedTranscriptHash(s, v.InterimTranscriptHashBefore, in)
		interim, err := schedule.InterimTranscriptHash(s, confirmed, ac.Auth.ConfirmationTag)
		ok := err == nil &&
			bytes.Equal(confirmed, v.ConfirmedTranscriptHashAfter) &&
			bytes.Equal(interim, v.InterimTranscriptHashAfter) &&
			s.VerifyMAC(v.ConfirmationKey, confirmed, ac.Auth.ConfirmationTag)
		if !ok {
			t.Errorf("suite %d: transcript hashes or confirmation tag differ (err %v)", cs, err)
			continue
		}
		passed[cs]++
	}
	logPassCounts(t, "transcript-hashes.json (decoded)", passed, total)
}
