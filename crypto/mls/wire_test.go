package mls

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testLeafNode(source LeafNodeSource) LeafNode {
	ln := LeafNode{
		EncryptionKey: HPKEPublicKey(bytes.Repeat([]byte{0xe1}, 32)),
		SignatureKey:  SignaturePublicKey(bytes.Repeat([]byte{0x51}, 32)),
		Credential:    Credential{Type: CredentialTypeBasic, Identity: []byte("alice")},
		Capabilities: Capabilities{
			Versions:     []ProtocolVersion{ProtocolVersionMLS10},
			CipherSuites: []CipherSuite{1, 0x4d},
			Extensions:   []ExtensionType{0x0a0a},
			Credentials:  []CredentialType{CredentialTypeBasic, CredentialTypeMoatOrg},
		},
		Source:     source,
		Extensions: Extensions{{Type: 0x0a0a, Data: []byte{1, 2}}},
		Signature:  bytes.Repeat([]byte{0x99}, 64),
	}
	switch source {
	case LeafNodeSourceKeyPackage:
		ln.Lifetime = &Lifetime{NotBefore: 1, NotAfter: 2}
	case LeafNodeSourceCommit:
		ln.ParentHash = []byte{7, 7, 7}
	}
	return ln
}

func testKeyPackage() *KeyPackage {
	return &KeyPackage{
		Version:     ProtocolVersionMLS10,
		CipherSuite: 1,
		InitKey:     HPKEPublicKey(bytes.Repeat([]byte{0x1e}, 32)),
		LeafNode:    testLeafNode(LeafNodeSourceKeyPackage),
		Signature:   bytes.Repeat([]byte{0x5e}, 64),
	}
}

func mustEncode(t testing.TB, enc func() ([]byte, error)) []byte {
	t.Helper()
	b, err := enc()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantDecodeErr asserts err is a *DecodeError wrapping target.
func wantDecodeErr(t *testing.T, what string, err, target error) {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) || !errors.Is(err, target) {
		t.Errorf("%s: err = %v, want *DecodeError wrapping %v", what, err, target)
	}
}

// decoders lists one valid encoding per top-level decoder.
func decoders(t *testing.T) map[string]struct {
	in  []byte
	dec func([]byte) error
} {
	v := loadMessagesVectors(t)[0]
	kp := testKeyPackage()
	ln := testLeafNode(LeafNodeSourceCommit)
	type entry = struct {
		in  []byte
		dec func([]byte) error
	}
	ignore := func(f func([]byte) error) func([]byte) error { return f }
	return map[string]entry{
		"MLSMessage": {mustHex(t, v["private_message"]), ignore(func(b []byte) error { _, err := DecodeMLSMessage(b); return err })},
		"KeyPackage": {mustEncode(t, kp.Encode), func(b []byte) error { _, err := DecodeKeyPackage(b); return err }},
		"LeafNode":   {mustEncode(t, ln.Encode), func(b []byte) error { _, err := DecodeLeafNode(b); return err }},
		"Commit":     {mustHex(t, v["commit"]), func(b []byte) error { _, err := DecodeCommit(b); return err }},
		"GroupSecrets": {mustHex(t, v["group_secrets"]), func(b []byte) error {
			_, err := DecodeGroupSecrets(b)
			return err
		}},
		"RatchetTree": {mustHex(t, v["ratchet_tree"]), func(b []byte) error { _, err := DecodeRatchetTree(b); return err }},
		"SenderData":  {make([]byte, 12), func(b []byte) error { _, err := DecodeSenderData(b); return err }},
	}
}

func TestDecodeTrailingData(t *testing.T) {
	for name, c := range decoders(t) {
		if err := c.dec(c.in); err != nil {
			t.Fatalf("%s: valid input refused: %v", name, err)
		}
		wantDecodeErr(t, name+" + 1 byte", c.dec(append(bytes.Clone(c.in), 0)), ErrTrailingData)
	}
}

// TestDecodeTruncated checks every proper prefix of a valid encoding is
// refused with a typed error (and never panics).
func TestDecodeTruncated(t *testing.T) {
	for name, c := range decoders(t) {
		for n := range len(c.in) {
			err := c.dec(c.in[:n])
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Errorf("%s truncated to %d: err = %v", name, n, err)
			}
		}
	}
}

func TestDecodeTooLarge(t *testing.T) {
	_, err := DecodeMLSMessage(make([]byte, MaxMessageSize+1))
	wantDecodeErr(t, "oversized message", err, ErrTooLarge)

	ext := make(Extensions, MaxExtensions+1)
	for i := range ext {
		ext[i].Type = ExtensionType(i + 100)
	}
	if _, err := ext.Encode(); !errors.Is(err, ErrTooLarge) {
		t.Errorf("encoding %d extensions: %v", len(ext), err)
	}
	// Hand-build the oversized list: 257 entries of type i, empty data.
	var body []byte
	for i := range MaxExtensions + 1 {
		body = append(body, byte(i>>8), byte(i), 0)
	}
	in := append([]byte{0x40 | byte(len(body)>>8), byte(len(body))}, body...)
	_, err = DecodeExtensions(in)
	wantDecodeErr(t, "257 extensions", err, ErrTooLarge)

	// An encryption key longer than MaxKeySize.
	ln := testLeafNode(LeafNodeSourceUpdate)
	ln.EncryptionKey = make([]byte, MaxKeySize+1)
	if _, err := ln.Encode(); !errors.Is(err, ErrTooLarge) {
		t.Errorf("encoding a %d-byte key: %v", len(ln.EncryptionKey), err)
	}
	n := MaxKeySize + 1
	in = append([]byte{0x40 | byte(n>>8), byte(n)}, make([]byte, n)...)
	_, err = DecodeLeafNode(in)
	wantDecodeErr(t, "oversized encryption_key", err, ErrTooLarge)

	// Capabilities with MaxCapabilityEntries+1 versions.
	ln = testLeafNode(LeafNodeSourceUpdate)
	ln.Capabilities.Versions = make([]ProtocolVersion, MaxCapabilityEntries+1)
	if _, err := ln.Encode(); !errors.Is(err, ErrTooLarge) {
		t.Errorf("encoding %d versions: %v", len(ln.Capabilities.Versions), err)
	}
}

func TestDecodeNonMinimalLength(t *testing.T) {
	// A KeyPackage whose init_key<V> header (1 byte, 0x20) is re-encoded in
	// two bytes (0x40 0x20).
	kp := mustEncode(t, testKeyPackage().Encode)
	if kp[4] != 0x20 {
		t.Fatalf("unexpected layout: %x", kp[:8])
	}
	bad := append(append(bytes.Clone(kp[:4]), 0x40, 0x20), kp[5:]...)
	_, err := DecodeKeyPackage(bad)
	wantDecodeErr(t, "non-minimal init_key length", err, ErrMalformed)
	// The reserved 0b11 prefix.
	bad = append(append(bytes.Clone(kp[:4]), 0xc0, 0, 0, 0, 0, 0, 0, 0x20), kp[5:]...)
	_, err = DecodeKeyPackage(bad)
	wantDecodeErr(t, "0b11 length prefix", err, ErrMalformed)
}

func TestDecodeOptionalAndBool(t *testing.T) {
	c := &Commit{Proposals: []ProposalOrRef{{Reference: []byte{1, 2, 3}}}}
	enc := mustEncode(t, c.Encode)
	if enc[len(enc)-1] != 0 {
		t.Fatal("unexpected layout")
	}
	for _, p := range []byte{2, 0x80, 0xff} {
		bad := bytes.Clone(enc)
		bad[len(bad)-1] = p
		_, err := DecodeCommit(bad)
		wantDecodeErr(t, "optional presence octet", err, ErrMalformed)
	}
	tree := RatchetTree{{Leaf: new(LeafNode)}}
	*tree[0].Leaf = testLeafNode(LeafNodeSourceUpdate)
	enc = mustEncode(t, tree.Encode)
	bad := bytes.Clone(enc)
	bad[1] = 2 // optional<Node> presence
	_, err := DecodeRatchetTree(bad)
	wantDecodeErr(t, "optional<Node> presence 2", err, ErrMalformed)
}

// TestDecodeInvalidEnums checks every select-driving enum refuses reserved
// and undefined values.
func TestDecodeInvalidEnums(t *testing.T) {
	// FramedContent: group_id "ab" (3 bytes), epoch (8), sender_type at 11.
	fc := &FramedContent{GroupID: []byte{0xa, 0xb}, Sender: Sender{Type: SenderTypeMember, Index: 3}, ContentType: ContentTypeApplication, ApplicationData: []byte("hi")}
	enc := mustEncode(t, fc.Encode)
	if _, err := DecodeFramedContent(enc); err != nil {
		t.Fatal(err)
	}
	for _, st := range []byte{0, 5, 0xff} {
		bad := bytes.Clone(enc)
		bad[11] = st
		_, err := DecodeFramedContent(bad)
		wantDecodeErr(t, "sender_type", err, ErrInvalidValue)
	}
	// content_type after sender (5 bytes) and authenticated_data (1 byte).
	for _, ct := range []byte{0, 4, 0xff} {
		bad := bytes.Clone(enc)
		bad[17] = ct
		_, err := DecodeFramedContent(bad)
		wantDecodeErr(t, "content_type", err, ErrInvalidValue)
	}

	// LeafNode: leaf_node_source after keys, credential and capabilities.
	ln := testLeafNode(LeafNodeSourceUpdate)
	enc = mustEncode(t, ln.Encode)
	srcAt := 33 + 33 + (2 + 1 + 5) + (3 + 5 + 3 + 1 + 5) // keys, credential, capabilities
	if LeafNodeSource(enc[srcAt]) != LeafNodeSourceUpdate {
		t.Fatalf("unexpected layout at %d: %x", srcAt, enc)
	}
	for _, s := range []byte{0, 4, 0xff} {
		bad := bytes.Clone(enc)
		bad[srcAt] = s
		_, err := DecodeLeafNode(bad)
		wantDecodeErr(t, "leaf_node_source", err, ErrInvalidValue)
	}
	// credential_type at 66.
	for _, ct := range []uint16{0, 3, 0x0a0a, 0xf000} {
		bad := bytes.Clone(enc)
		bad[66], bad[67] = byte(ct>>8), byte(ct)
		_, err := DecodeLeafNode(bad)
		wantDecodeErr(t, "credential_type", err, ErrInvalidValue)
	}

	// MLSMessage: version and wire_format.
	m := &MLSMessage{WireFormat: WireFormatKeyPackage, KeyPackage: testKeyPackage()}
	enc = mustEncode(t, m.Encode)
	for _, v := range []uint16{0, 2} {
		bad := bytes.Clone(enc)
		bad[0], bad[1] = byte(v>>8), byte(v)
		_, err := DecodeMLSMessage(bad)
		wantDecodeErr(t, "version", err, ErrInvalidValue)
	}
	for _, wf := range []uint16{0, 6, 0x0a0a} {
		bad := bytes.Clone(enc)
		bad[2], bad[3] = byte(wf>>8), byte(wf)
		_, err := DecodeMLSMessage(bad)
		wantDecodeErr(t, "wire_format", err, ErrInvalidValue)
	}
	// KeyPackage.version differing from the MLSMessage's (§10).
	bad := bytes.Clone(enc)
	bad[5] = 2
	_, err := DecodeMLSMessage(bad)
	wantDecodeErr(t, "key_package.version", err, ErrInvalidValue)

	// Proposal types and ProposalOrRef types.
	p := &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: 9}}
	enc = mustEncode(t, p.Encode)
	for _, pt := range []uint16{0, 8, 0x0a0a} {
		bad := bytes.Clone(enc)
		bad[0], bad[1] = byte(pt>>8), byte(pt)
		_, err := DecodeProposal(bad)
		wantDecodeErr(t, "proposal_type", err, ErrInvalidValue)
	}
	c := &Commit{Proposals: []ProposalOrRef{{Proposal: p}}}
	enc = mustEncode(t, c.Encode)
	for _, ty := range []byte{0, 3} {
		bad := bytes.Clone(enc)
		bad[1] = ty
		_, err := DecodeCommit(bad)
		wantDecodeErr(t, "ProposalOrRef type", err, ErrInvalidValue)
	}

	// PreSharedKeyID: psktype and usage.
	psk := &PreSharedKeyID{Type: PSKTypeResumption, Usage: ResumptionPSKUsageApplication, PSKGroupID: []byte{1}, PSKEpoch: 4, Nonce: []byte{2}}
	enc = mustEncode(t, psk.Encode)
	for _, ty := range []byte{0, 3} {
		bad := bytes.Clone(enc)
		bad[0] = ty
		_, err := DecodePreSharedKeyID(bad)
		wantDecodeErr(t, "psktype", err, ErrInvalidValue)
	}
	for _, u := range []byte{0, 4} {
		bad := bytes.Clone(enc)
		bad[1] = u
		_, err := DecodePreSharedKeyID(bad)
		wantDecodeErr(t, "usage", err, ErrInvalidValue)
	}

	// Node type in a ratchet tree.
	tree := RatchetTree{{Leaf: &ln}}
	enc = mustEncode(t, tree.Encode)
	for _, nt := range []byte{0, 3} {
		bad := bytes.Clone(enc)
		bad[3] = nt // 2-byte vector header, presence octet, node_type
		_, err := DecodeRatchetTree(bad)
		wantDecodeErr(t, "node_type", err, ErrInvalidValue)
	}

	// GroupContext.version.
	gc := &GroupContext{CipherSuite: 1, GroupID: []byte{1}}
	enc = mustEncode(t, gc.Encode)
	bad = bytes.Clone(enc)
	bad[1] = 2
	_, err = DecodeGroupContext(bad)
	wantDecodeErr(t, "group_context.version", err, ErrInvalidValue)

	// PrivateMessage.content_type: group_id "a" (2 bytes), epoch (8).
	pm := &PrivateMessage{GroupID: []byte{0xa}, ContentType: ContentTypeApplication}
	enc = mustEncode(t, pm.Encode)
	for _, ct := range []byte{0, 4} {
		bad := bytes.Clone(enc)
		bad[10] = ct
		_, err := DecodePrivateMessage(bad)
		wantDecodeErr(t, "private content_type", err, ErrInvalidValue)
	}
}

func TestDuplicateExtensions(t *testing.T) {
	e := Extensions{{Type: 5, Data: []byte{1}}, {Type: 9}, {Type: 5}}
	if _, err := e.Encode(); !errors.Is(err, ErrDuplicateExtension) {
		t.Errorf("encode: %v", err)
	}
	// 3 entries: 0005 01 01, 0009 00, 0005 00.
	in := mustHex(t, "0a"+"00050101"+"000900"+"000500")
	_, err := DecodeExtensions(in)
	wantDecodeErr(t, "duplicate extension", err, ErrDuplicateExtension)
	// Duplicates nested in a LeafNode and a GroupContext are refused too.
	ln := testLeafNode(LeafNodeSourceUpdate)
	ln.Extensions = Extensions{{Type: 0x0a0a}, {Type: 0x0a0a}}
	if _, err := ln.Encode(); !errors.Is(err, ErrDuplicateExtension) {
		t.Errorf("leaf encode: %v", err)
	}
	ln.Extensions = Extensions{{Type: 0x0a0a}, {Type: 0x0a0b}}
	enc := mustEncode(t, ln.Encode)
	i := bytes.Index(enc, []byte{0x0a, 0x0a, 0x00, 0x0a, 0x0b, 0x00})
	enc[i+4] = 0x0a
	_, err = DecodeLeafNode(enc)
	wantDecodeErr(t, "duplicate leaf extension", err, ErrDuplicateExtension)
	// Unknown types are kept and re-encoded unchanged.
	e = Extensions{{Type: 0xfafa, Data: []byte("grease")}, {Type: ExtensionTypeApplicationID, Data: []byte{2, 'h', 'i'}}}
	enc = mustEncode(t, e.Encode)
	got, err := DecodeExtensions(enc)
	if err != nil || !got.Equal(e) {
		t.Errorf("unknown extension round trip: %v %v", got, err)
	}
}

func TestPrivateMessageContentPadding(t *testing.T) {
	p := &PrivateMessageContent{ContentType: ContentTypeApplication, ApplicationData: []byte("hello"), Auth: FramedContentAuthData{Signature: []byte{1, 2}}, PaddingLen: 10}
	enc := mustEncode(t, p.Encode)
	got, err := DecodePrivateMessageContent(ContentTypeApplication, enc)
	if err != nil || got.PaddingLen != 10 || string(got.ApplicationData) != "hello" {
		t.Fatalf("decode: %+v %v", got, err)
	}
	for i := len(enc) - 10; i < len(enc); i++ {
		bad := bytes.Clone(enc)
		bad[i] = 1
		_, err := DecodePrivateMessageContent(ContentTypeApplication, bad)
		wantDecodeErr(t, "non-zero padding", err, ErrMalformed)
	}
	// The content type decides the layout: a commit's confirmation tag is
	// read from what would be padding.
	_, err = DecodePrivateMessageContent(ContentTypeCommit, enc)
	if err == nil {
		t.Error("application content decoded as a commit")
	}
	_, err = DecodePrivateMessageContent(0, enc)
	wantDecodeErr(t, "content type 0", err, ErrInvalidValue)
}

func TestRatchetTreeStructure(t *testing.T) {
	leaf := testLeafNode(LeafNodeSourceCommit)
	parent := &ParentNode{EncryptionKey: []byte{1}, UnmergedLeaves: []uint32{1}}
	good := RatchetTree{{Leaf: &leaf}, {Parent: parent}, {Leaf: &leaf}}
	enc := mustEncode(t, good.Encode)
	if got, err := DecodeRatchetTree(enc); err != nil || len(got) != 3 {
		t.Fatalf("decode: %v", err)
	}
	for name, tree := range map[string]RatchetTree{
		"empty":          {},
		"even length":    {{Leaf: &leaf}, {Parent: parent}},
		"last blank":     {{Leaf: &leaf}, {Parent: parent}, nil},
		"parent at leaf": {{Parent: parent}},
		"leaf at parent": {{Leaf: &leaf}, {Leaf: &leaf}, {Leaf: &leaf}},
	} {
		if _, err := tree.Encode(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	// Hand-made encodings of the same defects.
	leafEnc := mustEncode(t, leaf.Encode)
	for name, nodes := range map[string][][]byte{
		"empty":      {},
		"last blank": {append([]byte{1, 1}, leafEnc...), {0}, {0}},
		"even":       {append([]byte{1, 1}, leafEnc...), {0}},
		"leaf at 1":  {append([]byte{1, 1}, leafEnc...), append([]byte{1, 1}, leafEnc...), append([]byte{1, 1}, leafEnc...)},
	} {
		body := bytes.Join(nodes, nil)
		in := append([]byte{0x40 | byte(len(body)>>8), byte(len(body))}, body...)
		_, err := DecodeRatchetTree(in)
		wantDecodeErr(t, name, err, ErrMalformed)
	}
	// Unmerged leaves must increase strictly.
	for _, ul := range [][]uint32{{2, 1}, {1, 1}} {
		p := &ParentNode{EncryptionKey: []byte{1}, UnmergedLeaves: ul}
		if _, err := p.Encode(); err == nil {
			t.Errorf("unmerged %v encoded", ul)
		}
		p.UnmergedLeaves = []uint32{1, 3}
		enc := mustEncode(t, p.Encode)
		enc[len(enc)-1] = byte(ul[1])
		enc[len(enc)-5] = byte(ul[0])
		_, err := DecodeParentNode(enc)
		wantDecodeErr(t, "unmerged leaves", err, ErrMalformed)
	}
}

func TestEncodeInconsistentSelect(t *testing.T) {
	kp := testKeyPackage()
	for name, enc := range map[string]func() ([]byte, error){
		"proposal type mismatch": (&Proposal{Type: ProposalTypeAdd, Remove: &Remove{}}).Encode,
		"two proposal bodies":    (&Proposal{Type: ProposalTypeRemove, Remove: &Remove{}, Add: &Add{}}).Encode,
		"no proposal body":       (&Proposal{Type: ProposalTypeRemove}).Encode,
		"two messages":           (&MLSMessage{WireFormat: WireFormatKeyPackage, KeyPackage: kp, Welcome: &Welcome{}}).Encode,
		"wire format mismatch":   (&MLSMessage{WireFormat: WireFormatWelcome, KeyPackage: kp}).Encode,
		"key_package leaf without lifetime": (&LeafNode{Source: LeafNodeSourceKeyPackage,
			Credential: Credential{Type: CredentialTypeBasic}}).Encode,
		"update leaf with parent hash": (&LeafNode{Source: LeafNodeSourceUpdate, ParentHash: []byte{1},
			Credential: Credential{Type: CredentialTypeBasic}}).Encode,
		"unknown credential type": (&Credential{Type: 3}).Encode,
		"basic with certificates": (&Credential{Type: CredentialTypeBasic, Certificates: [][]byte{{1}}}).Encode,
		"membership tag for an external sender": (&PublicMessage{Content: FramedContent{Sender: Sender{Type: SenderTypeExternal},
			ContentType: ContentTypeProposal, Proposal: &Proposal{Type: ProposalTypeRemove, Remove: &Remove{}}},
			MembershipTag: []byte{1}}).Encode,
		"confirmation tag on an application message": (&PrivateMessageContent{ContentType: ContentTypeApplication,
			Auth: FramedContentAuthData{ConfirmationTag: []byte{1}}}).Encode,
		"index for a new member": (&FramedContent{Sender: Sender{Type: SenderTypeNewMemberCommit, Index: 1},
			ContentType: ContentTypeCommit, Commit: &Commit{}}).Encode,
		"ref and proposal": (&Commit{Proposals: []ProposalOrRef{{Reference: []byte{1}, Proposal: &Proposal{}}}}).Encode,
		"empty ref":        (&Commit{Proposals: []ProposalOrRef{{}}}).Encode,
	} {
		_, err := enc()
		var ee *EncodeError
		if !errors.As(err, &ee) {
			t.Errorf("%s: err = %v, want *EncodeError", name, err)
		}
	}
}

// TestDecodeDoesNotAlias checks decoded values own their bytes: scribbling
// over the input afterwards changes nothing, and the decoded slices have no
// spare capacity into neighbouring fields.
func TestDecodeDoesNotAlias(t *testing.T) {
	v := loadMessagesVectors(t)[0]
	for _, field := range []string{"mls_key_package", "mls_welcome", "mls_group_info", "public_message_commit", "private_message"} {
		in := mustHex(t, v[field])
		orig := bytes.Clone(in)
		m, err := DecodeMLSMessage(in)
		if err != nil {
			t.Fatal(err)
		}
		for i := range in {
			in[i] ^= 0xff
		}
		out := mustEncode(t, m.Encode)
		if !bytes.Equal(out, orig) {
			t.Errorf("%s: decoded message changed with its input", field)
		}
	}
	kp, err := DecodeKeyPackage(mustEncode(t, testKeyPackage().Encode))
	if err != nil {
		t.Fatal(err)
	}
	if cap(kp.InitKey) != len(kp.InitKey) || cap(kp.LeafNode.Credential.Identity) != len(kp.LeafNode.Credential.Identity) {
		t.Error("decoded slices have spare capacity")
	}
}

func TestCredentialRoundTrip(t *testing.T) {
	for _, c := range []Credential{
		{Type: CredentialTypeBasic, Identity: []byte("bob")},
		{Type: CredentialTypeBasic},
		{Type: CredentialTypeX509, Certificates: [][]byte{[]byte("leaf"), []byte("ca")}},
		{Type: CredentialTypeMoatOrg, Data: []byte("org certificate and KT proof")},
	} {
		enc := mustEncode(t, c.Encode)
		got, err := DecodeCredential(enc)
		if err != nil || !got.Equal(&c) {
			t.Errorf("%+v: got %+v, %v", c, got, err)
		}
	}
	certs := make([][]byte, MaxCertificates+1)
	if _, err := (&Credential{Type: CredentialTypeX509, Certificates: certs}).Encode(); !errors.Is(err, ErrTooLarge) {
		t.Errorf("%d certificates: %v", len(certs), err)
	}
}

func TestExtensionPayloads(t *testing.T) {
	rc := &RequiredCapabilities{ExtensionTypes: []ExtensionType{0xff00}, ProposalTypes: []ProposalType{0xff01}, CredentialTypes: []CredentialType{CredentialTypeMoatOrg}}
	enc := mustEncode(t, rc.Encode)
	if got, err := DecodeRequiredCapabilities(enc); err != nil || got.CredentialTypes[0] != CredentialTypeMoatOrg || got.ExtensionTypes[0] != 0xff00 {
		t.Errorf("required_capabilities: %+v %v", got, err)
	}
	// An odd-length uint16 list.
	_, err := DecodeRequiredCapabilities(mustHex(t, "03ff00ff0000"))
	wantDecodeErr(t, "odd uint16 list", err, ErrMalformed)

	es := ExternalSenders{{SignatureKey: []byte{1, 2}, Credential: Credential{Type: CredentialTypeBasic, Identity: []byte("ds")}}}
	enc = mustEncode(t, es.Encode)
	if got, err := DecodeExternalSenders(enc); err != nil || len(got) != 1 || !got[0].Credential.Equal(&es[0].Credential) {
		t.Errorf("external_senders: %+v %v", got, err)
	}
	ep := &ExternalPub{ExternalPub: []byte{9, 9}}
	enc = mustEncode(t, ep.Encode)
	if got, err := DecodeExternalPub(enc); err != nil || !bytes.Equal(got.ExternalPub, ep.ExternalPub) {
		t.Errorf("external_pub: %+v %v", got, err)
	}
	enc = mustEncode(t, ApplicationID("device-7").Encode)
	if got, err := DecodeApplicationID(enc); err != nil || string(got) != "device-7" {
		t.Errorf("application_id: %q %v", got, err)
	}
}

func TestOrgCredential(t *testing.T) {
	o := &OrgCredential{Serial: 7}
	o.Tenant[0], o.User[1], o.Device[2] = 1, 2, 3
	c, err := o.Credential()
	if err != nil {
		t.Fatal(err)
	}
	if c.Type != CredentialTypeMoatOrg || len(c.Data) != 57 {
		t.Fatalf("credential %d with %d bytes", c.Type, len(c.Data))
	}
	enc := mustEncode(t, c.Encode)
	if len(enc) != 60 {
		t.Errorf("encoded credential is %d bytes, want 60", len(enc))
	}
	got, err := DecodeOrgCredential(&c)
	if err != nil || *got != *o {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for name, mutate := range map[string]func(b []byte) []byte{
		"version 2":     func(b []byte) []byte { b[0] = 2; return b },
		"zero tenant":   func(b []byte) []byte { b[1] = 0; return b },
		"zero serial":   func(b []byte) []byte { b[56] = 0; return b },
		"truncated":     func(b []byte) []byte { return b[:56] },
		"trailing data": func(b []byte) []byte { return append(b, 0) },
	} {
		bad := Credential{Type: CredentialTypeMoatOrg, Data: mutate(bytes.Clone(c.Data))}
		if _, err := DecodeOrgCredential(&bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := DecodeOrgCredential(&Credential{Type: CredentialTypeBasic, Identity: c.Data}); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("basic credential: %v", err)
	}
}
