package mls

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// codec decodes one field of messages.json and re-encodes the result.
type codec func([]byte) ([]byte, error)

func roundTrip[T any](dec func([]byte) (T, error), enc func(T) ([]byte, error)) codec {
	return func(b []byte) ([]byte, error) {
		v, err := dec(b)
		if err != nil {
			return nil, err
		}
		return enc(v)
	}
}

func proposalBody(t ProposalType) codec {
	return roundTrip(func(b []byte) (*Proposal, error) { return DecodeProposalBody(t, b) }, (*Proposal).EncodeBody)
}

// messagesCodecs maps each messages.json field to its structure
// (testdata/FORMAT.md "Messages").
var messagesCodecs = map[string]codec{
	"mls_welcome":                       roundTrip(DecodeMLSMessage, (*MLSMessage).Encode),
	"mls_group_info":                    roundTrip(DecodeMLSMessage, (*MLSMessage).Encode),
	"mls_key_package":                   roundTrip(DecodeMLSMessage, (*MLSMessage).Encode),
	"ratchet_tree":                      roundTrip(DecodeRatchetTree, RatchetTree.Encode),
	"group_secrets":                     roundTrip(DecodeGroupSecrets, (*GroupSecrets).Encode),
	"add_proposal":                      proposalBody(ProposalTypeAdd),
	"update_proposal":                   proposalBody(ProposalTypeUpdate),
	"remove_proposal":                   proposalBody(ProposalTypeRemove),
	"pre_shared_key_proposal":           proposalBody(ProposalTypePSK),
	"re_init_proposal":                  proposalBody(ProposalTypeReInit),
	"external_init_proposal":            proposalBody(ProposalTypeExternalInit),
	"group_context_extensions_proposal": proposalBody(ProposalTypeGroupContextExtensions),
	"commit":                            roundTrip(DecodeCommit, (*Commit).Encode),
	"public_message_application":        roundTrip(DecodeMLSMessage, (*MLSMessage).Encode),
	"public_message_proposal":           roundTrip(DecodeMLSMessage, (*MLSMessage).Encode),
	"public_message_commit":             roundTrip(DecodeMLSMessage, (*MLSMessage).Encode),
	"private_message":                   roundTrip(DecodeMLSMessage, (*MLSMessage).Encode),
}

// wantWireFormat is the wire format FORMAT.md requires of the MLSMessage
// fields.
var wantWireFormat = map[string]WireFormat{
	"mls_welcome":                WireFormatWelcome,
	"mls_group_info":             WireFormatGroupInfo,
	"mls_key_package":            WireFormatKeyPackage,
	"public_message_application": WireFormatPublicMessage,
	"public_message_proposal":    WireFormatPublicMessage,
	"public_message_commit":      WireFormatPublicMessage,
	"private_message":            WireFormatPrivateMessage,
}

func loadMessagesVectors(t testing.TB) []map[string]string {
	raw, err := os.ReadFile("testdata/messages.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []map[string]string
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
	return vs
}

// TestMessagesVectors decodes every field of testdata/messages.json and
// checks the re-encoding is byte-identical.
func TestMessagesVectors(t *testing.T) {
	vs := loadMessagesVectors(t)
	total, passed := 0, 0
	for i, v := range vs {
		if len(v) != len(messagesCodecs) {
			t.Errorf("vector %d: %d fields, want %d", i, len(v), len(messagesCodecs))
		}
		for field, hexval := range v {
			total++
			c, ok := messagesCodecs[field]
			if !ok {
				t.Errorf("vector %d: unknown field %q", i, field)
				continue
			}
			in, err := hex.DecodeString(hexval)
			if err != nil {
				t.Fatalf("vector %d %s: %v", i, field, err)
			}
			out, err := c(in)
			if err != nil {
				t.Errorf("vector %d %s: %v", i, field, err)
				continue
			}
			if !bytes.Equal(out, in) {
				t.Errorf("vector %d %s: re-encoding differs\n got %x\nwant %x", i, field, out, in)
				continue
			}
			if wf, ok := wantWireFormat[field]; ok {
				m, _ := DecodeMLSMessage(in)
				if m.WireFormat != wf {
					t.Errorf("vector %d %s: wire_format %d, want %d", i, field, m.WireFormat, wf)
					continue
				}
				if field == "public_message_application" && m.PublicMessage.Content.ContentType != ContentTypeApplication ||
					field == "public_message_proposal" && m.PublicMessage.Content.ContentType != ContentTypeProposal ||
					field == "public_message_commit" && m.PublicMessage.Content.ContentType != ContentTypeCommit {
					t.Errorf("vector %d %s: content_type %d", i, field, m.PublicMessage.Content.ContentType)
					continue
				}
			}
			passed++
		}
	}
	t.Logf("messages.json: %d/%d structs passed", passed, total)
}
