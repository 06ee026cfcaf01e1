package mls

import (
	"bytes"
	"errors"
	"sync"
	"testing"
)

// Round-trip fuzz targets for every decoder: whatever decodes must
// re-encode to exactly the input, and whatever fails must fail with a
// *DecodeError. Seeds are the messages.json vectors and their parts.

type fuzzSeeds map[string][][]byte

func (s fuzzSeeds) add(name string, enc func() ([]byte, error)) {
	if b, err := enc(); err == nil {
		s[name] = append(s[name], b)
	}
}

// messagesSeeds splits the first vectors of messages.json into seeds per
// structure.
func messagesSeeds(t testing.TB) fuzzSeeds {
	seedsOnce.Do(func() { seeds = makeSeeds(t) })
	return seeds
}

var (
	seedsOnce sync.Once
	seeds     fuzzSeeds
)

func makeSeeds(t testing.TB) fuzzSeeds {
	s := fuzzSeeds{}
	s.add("ParentNode", (&ParentNode{EncryptionKey: []byte{1, 2}, ParentHash: []byte{3}, UnmergedLeaves: []uint32{0, 5}}).Encode)
	s.add("ParentNode", (&ParentNode{EncryptionKey: make([]byte, 32)}).Encode)
	s.add("SenderData", (&SenderData{LeafIndex: 7, Generation: 1 << 20, ReuseGuard: [4]byte{1, 2, 3, 4}}).Encode)
	s.add("RequiredCapabilities", (&RequiredCapabilities{ExtensionTypes: []ExtensionType{ExtensionTypeExternalSenders, 0xff0a},
		ProposalTypes: []ProposalType{ProposalTypeAdd}, CredentialTypes: []CredentialType{CredentialTypeBasic, CredentialTypeMoatOrg}}).Encode)
	s.add("RequiredCapabilities", (&RequiredCapabilities{}).Encode)
	s.add("ExternalSenders", ExternalSenders{{SignatureKey: make([]byte, 32), Credential: Credential{Type: CredentialTypeBasic, Identity: []byte("relay")}}}.Encode)
	s.add("ExternalSenders", ExternalSenders{}.Encode)
	s.add("ExternalPub", (&ExternalPub{ExternalPub: make([]byte, 32)}).Encode)
	s.add("ApplicationID", ApplicationID("moat").Encode)
	s.add("Credential", (&Credential{Type: CredentialTypeBasic, Identity: []byte("alice")}).Encode)
	s.add("PreSharedKeyID", (&PreSharedKeyID{Type: PSKTypeResumption, Usage: ResumptionPSKUsageApplication, PSKGroupID: []byte("g"), PSKEpoch: 3, Nonce: make([]byte, 32)}).Encode)
	for _, v := range loadMessagesVectors(t)[:20] {
		for field, h := range v {
			in := mustHex(t, h)
			switch field {
			case "ratchet_tree":
				s["RatchetTree"] = append(s["RatchetTree"], in)
				tree, err := DecodeRatchetTree(in)
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range tree {
					switch {
					case n == nil:
					case n.Leaf != nil:
						s.add("LeafNode", n.Leaf.Encode)
						s.add("Credential", n.Leaf.Credential.Encode)
					default:
						s.add("ParentNode", n.Parent.Encode)
					}
				}
			case "group_secrets":
				s["GroupSecrets"] = append(s["GroupSecrets"], in)
			case "add_proposal", "update_proposal", "remove_proposal", "pre_shared_key_proposal",
				"re_init_proposal", "external_init_proposal", "group_context_extensions_proposal":
				// FuzzDecodeProposalBody takes the proposal type as the
				// first two input bytes.
				pt := proposalVectorTypes[field]
				s["ProposalBody"] = append(s["ProposalBody"], append([]byte{byte(pt >> 8), byte(pt)}, in...))
				if p, err := DecodeProposalBody(pt, in); err == nil && p.PreSharedKey != nil {
					s.add("PreSharedKeyID", p.PreSharedKey.PSK.Encode)
				}
			case "commit":
				s["Commit"] = append(s["Commit"], in)
				if c, err := DecodeCommit(in); err == nil && c.Path != nil {
					s.add("UpdatePath", c.Path.Encode)
				}
			default:
				s["MLSMessage"] = append(s["MLSMessage"], in)
				m, err := DecodeMLSMessage(in)
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case m.KeyPackage != nil:
					s.add("KeyPackage", m.KeyPackage.Encode)
					s.add("LeafNode", m.KeyPackage.LeafNode.Encode)
					s.add("Extensions", m.KeyPackage.Extensions.Encode)
				case m.Welcome != nil:
					s.add("Welcome", m.Welcome.Encode)
				case m.GroupInfo != nil:
					s.add("GroupInfo", m.GroupInfo.Encode)
					s.add("GroupContext", m.GroupInfo.GroupContext.Encode)
				case m.PublicMessage != nil:
					s.add("PublicMessage", m.PublicMessage.Encode)
					s.add("FramedContent", m.PublicMessage.Content.Encode)
					if p := m.PublicMessage.Content.Proposal; p != nil {
						s.add("Proposal", p.Encode)
					}
					ac := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: m.PublicMessage.Content, Auth: m.PublicMessage.Auth}
					s.add("AuthenticatedContent", ac.Encode)
					pc := &PrivateMessageContent{ContentType: m.PublicMessage.Content.ContentType,
						ApplicationData: m.PublicMessage.Content.ApplicationData, Proposal: m.PublicMessage.Content.Proposal,
						Commit: m.PublicMessage.Content.Commit, Auth: m.PublicMessage.Auth, PaddingLen: 3}
					if b, err := pc.Encode(); err == nil {
						s["PrivateMessageContent"] = append(s["PrivateMessageContent"], append([]byte{byte(pc.ContentType)}, b...))
					}
				case m.PrivateMessage != nil:
					s.add("PrivateMessage", m.PrivateMessage.Encode)
				}
			}
		}
	}
	return s
}

// proposalVectorTypes maps the proposal fields of messages.json to their
// proposal types.
var proposalVectorTypes = map[string]ProposalType{
	"add_proposal": ProposalTypeAdd, "update_proposal": ProposalTypeUpdate, "remove_proposal": ProposalTypeRemove,
	"pre_shared_key_proposal": ProposalTypePSK, "re_init_proposal": ProposalTypeReInit,
	"external_init_proposal": ProposalTypeExternalInit, "group_context_extensions_proposal": ProposalTypeGroupContextExtensions,
}

func fuzzRoundTrip[T any](f *testing.F, name string, dec func([]byte) (T, error), enc func(T) ([]byte, error)) {
	seeds := messagesSeeds(f)[name]
	if len(seeds) == 0 {
		f.Fatalf("no seeds for %s", name)
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := dec(in)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		out, err := enc(v)
		if err != nil {
			t.Fatalf("decoded value does not encode: %v", err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("round trip\n in %x\nout %x", in, out)
		}
	})
}

func FuzzDecodeMLSMessage(f *testing.F) {
	fuzzRoundTrip(f, "MLSMessage", DecodeMLSMessage, (*MLSMessage).Encode)
}

func FuzzDecodeKeyPackage(f *testing.F) {
	fuzzRoundTrip(f, "KeyPackage", DecodeKeyPackage, (*KeyPackage).Encode)
}

func FuzzDecodeLeafNode(f *testing.F) {
	fuzzRoundTrip(f, "LeafNode", DecodeLeafNode, (*LeafNode).Encode)
}

func FuzzDecodeParentNode(f *testing.F) {
	fuzzRoundTrip(f, "ParentNode", DecodeParentNode, (*ParentNode).Encode)
}

func FuzzDecodeRatchetTree(f *testing.F) {
	fuzzRoundTrip(f, "RatchetTree", DecodeRatchetTree, RatchetTree.Encode)
}

func FuzzDecodeExtensions(f *testing.F) {
	fuzzRoundTrip(f, "Extensions", DecodeExtensions, Extensions.Encode)
}

func FuzzDecodeWelcome(f *testing.F) {
	fuzzRoundTrip(f, "Welcome", DecodeWelcome, (*Welcome).Encode)
}

func FuzzDecodeGroupSecrets(f *testing.F) {
	fuzzRoundTrip(f, "GroupSecrets", DecodeGroupSecrets, (*GroupSecrets).Encode)
}

func FuzzDecodeGroupInfo(f *testing.F) {
	fuzzRoundTrip(f, "GroupInfo", DecodeGroupInfo, (*GroupInfo).Encode)
}

func FuzzDecodeGroupContext(f *testing.F) {
	fuzzRoundTrip(f, "GroupContext", DecodeGroupContext, (*GroupContext).Encode)
}

func FuzzDecodeCommit(f *testing.F) {
	fuzzRoundTrip(f, "Commit", DecodeCommit, (*Commit).Encode)
}

func FuzzDecodeProposal(f *testing.F) {
	fuzzRoundTrip(f, "Proposal", DecodeProposal, (*Proposal).Encode)
}

func FuzzDecodeFramedContent(f *testing.F) {
	fuzzRoundTrip(f, "FramedContent", DecodeFramedContent, (*FramedContent).Encode)
}

func FuzzDecodeAuthenticatedContent(f *testing.F) {
	fuzzRoundTrip(f, "AuthenticatedContent", DecodeAuthenticatedContent, (*AuthenticatedContent).Encode)
}

func FuzzDecodePublicMessage(f *testing.F) {
	fuzzRoundTrip(f, "PublicMessage", DecodePublicMessage, (*PublicMessage).Encode)
}

func FuzzDecodePrivateMessage(f *testing.F) {
	fuzzRoundTrip(f, "PrivateMessage", DecodePrivateMessage, (*PrivateMessage).Encode)
}

// FuzzDecodePrivateMessageContent takes the content type as the first
// input byte.
func FuzzDecodePrivateMessageContent(f *testing.F) {
	fuzzRoundTrip(f, "PrivateMessageContent",
		func(b []byte) (*PrivateMessageContent, error) {
			if len(b) == 0 {
				return nil, &DecodeError{Struct: "PrivateMessageContent", Err: ErrMalformed}
			}
			return DecodePrivateMessageContent(ContentType(b[0]), b[1:])
		},
		func(p *PrivateMessageContent) ([]byte, error) {
			b, err := p.Encode()
			return append([]byte{byte(p.ContentType)}, b...), err
		})
}

func FuzzDecodeOrgCredential(f *testing.F) {
	o := &OrgCredential{Tenant: [16]byte{1}, User: [16]byte{2}, Device: [16]byte{3}, Serial: 9}
	c, err := o.Credential()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.Data)
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := DecodeOrgCredential(&Credential{Type: CredentialTypeMoatOrg, Data: in})
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		c, err := got.Credential()
		if err != nil || !bytes.Equal(c.Data, in) {
			t.Fatalf("round trip %x -> %x (%v)", in, c.Data, err)
		}
	})
}

func FuzzDecodeSenderData(f *testing.F) {
	fuzzRoundTrip(f, "SenderData", DecodeSenderData, (*SenderData).Encode)
}

func FuzzDecodeRequiredCapabilities(f *testing.F) {
	fuzzRoundTrip(f, "RequiredCapabilities", DecodeRequiredCapabilities, (*RequiredCapabilities).Encode)
}

func FuzzDecodeExternalSenders(f *testing.F) {
	fuzzRoundTrip(f, "ExternalSenders", DecodeExternalSenders, ExternalSenders.Encode)
}

func FuzzDecodeExternalPub(f *testing.F) {
	fuzzRoundTrip(f, "ExternalPub", DecodeExternalPub, (*ExternalPub).Encode)
}

func FuzzDecodeApplicationID(f *testing.F) {
	fuzzRoundTrip(f, "ApplicationID", DecodeApplicationID, ApplicationID.Encode)
}

func FuzzDecodeCredential(f *testing.F) {
	fuzzRoundTrip(f, "Credential", DecodeCredential, (*Credential).Encode)
}

func FuzzDecodeUpdatePath(f *testing.F) {
	fuzzRoundTrip(f, "UpdatePath", DecodeUpdatePath, (*UpdatePath).Encode)
}

func FuzzDecodePreSharedKeyID(f *testing.F) {
	fuzzRoundTrip(f, "PreSharedKeyID", DecodePreSharedKeyID, (*PreSharedKeyID).Encode)
}

// FuzzDecodeProposalBody takes the proposal type as the first two input
// bytes; seeds are the proposal bodies of messages.json.
func FuzzDecodeProposalBody(f *testing.F) {
	fuzzRoundTrip(f, "ProposalBody",
		func(b []byte) (*Proposal, error) {
			if len(b) < 2 {
				return nil, &DecodeError{Struct: "Proposal", Err: ErrMalformed}
			}
			return DecodeProposalBody(ProposalType(b[0])<<8|ProposalType(b[1]), b[2:])
		},
		func(p *Proposal) ([]byte, error) {
			b, err := p.EncodeBody()
			return append([]byte{byte(p.Type >> 8), byte(p.Type)}, b...), err
		})
}
