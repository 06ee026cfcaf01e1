package schedule

import (
	"bytes"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

func TestKeyScheduleInputs(t *testing.T) {
	s := testSuite(t)
	nh := s.Nh()
	good := make([]byte, nh)
	if _, err := JoinerSecret(s, good[1:], nil, nil); err != ErrSecretLength {
		t.Errorf("short init_secret: %v", err)
	}
	if _, err := JoinerSecret(s, good, good[1:], nil); err != ErrSecretLength {
		t.Errorf("short commit_secret: %v", err)
	}
	if _, err := NewEpoch(s, good[1:], nil, nil); err != ErrSecretLength {
		t.Errorf("short joiner_secret: %v", err)
	}
	if _, err := NewEpoch(s, good, good[1:], nil); err != ErrSecretLength {
		t.Errorf("short psk_secret: %v", err)
	}
	// nil commit and psk secrets are the all-zero vector.
	a, err := Next(s, good, nil, nil, []byte("gc"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Next(s, good, make([]byte, nh), make([]byte, nh), []byte("gc"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.EpochAuthenticator, b.EpochAuthenticator) {
		t.Error("nil is not the zero vector")
	}
	// The GroupContext is bound into the epoch.
	c, _ := Next(s, good, nil, nil, []byte("gC"))
	if bytes.Equal(a.EpochAuthenticator, c.EpochAuthenticator) || bytes.Equal(a.JoinerSecret, c.JoinerSecret) {
		t.Error("GroupContext does not affect the epoch")
	}
	// Every derived secret is distinct and Nh bytes.
	seen := map[string]bool{}
	for _, v := range [][]byte{a.JoinerSecret, a.WelcomeSecret, a.SenderDataSecret, a.EncryptionSecret,
		a.ExporterSecret, a.ExternalSecret, a.ConfirmationKey, a.MembershipKey, a.ResumptionPSK,
		a.EpochAuthenticator, a.InitSecret} {
		if len(v) != nh || seen[string(v)] {
			t.Fatal("derived secrets are not distinct Nh-byte values")
		}
		seen[string(v)] = true
	}
}

func TestEpochTags(t *testing.T) {
	s := testSuite(t)
	e, err := Next(s, make([]byte, s.Nh()), nil, nil, []byte("gc"))
	if err != nil {
		t.Fatal(err)
	}
	cth := []byte("confirmed transcript hash")
	tag := e.ConfirmationTag(cth)
	if !e.VerifyConfirmationTag(cth, tag) {
		t.Fatal("confirmation tag rejected")
	}
	tag[0] ^= 1
	if e.VerifyConfirmationTag(cth, tag) {
		t.Fatal("bad confirmation tag accepted")
	}
	mt := e.MembershipTag([]byte("tbm"))
	if !e.VerifyMembershipTag([]byte("tbm"), mt) || e.VerifyMembershipTag([]byte("tbM"), mt) {
		t.Fatal("membership tag")
	}
	key, nonce, err := WelcomeKeyNonce(s, e.WelcomeSecret)
	if err != nil || len(key) != s.Nk() || len(nonce) != s.Nn() {
		t.Fatalf("WelcomeKeyNonce: %v", err)
	}
	x1, _ := e.Exporter("moat test", []byte("ctx"), 40)
	x2, _ := e.Exporter("moat test", []byte("ctX"), 40)
	x3, _ := e.Exporter("moat tesT", []byte("ctx"), 40)
	if len(x1) != 40 || bytes.Equal(x1, x2) || bytes.Equal(x1, x3) {
		t.Fatal("exporter does not separate label and context")
	}
}

func TestExternalInit(t *testing.T) {
	for _, id := range suite.Supported {
		s, _ := suite.Get(id)
		e, err := Next(s, make([]byte, s.Nh()), nil, nil, []byte("gc"))
		if err != nil {
			t.Fatal(err)
		}
		priv, pub, err := e.ExternalKeyPair()
		if err != nil {
			t.Fatal(err)
		}
		kemOutput, initJoiner, err := ExternalInitSend(s, pub)
		if err != nil {
			t.Fatal(err)
		}
		initMember, err := ExternalInitReceive(s, priv, kemOutput)
		if err != nil || !bytes.Equal(initJoiner, initMember) || len(initMember) != s.Nh() {
			t.Fatalf("%v: external init secrets differ: %v", id, err)
		}
		// Both sides then reach the same epoch.
		gc := []byte("next group context")
		j, _ := Next(s, initJoiner, nil, nil, gc)
		m, _ := Next(s, initMember, nil, nil, gc)
		if !bytes.Equal(j.EpochAuthenticator, m.EpochAuthenticator) {
			t.Fatalf("%v: joiner and member disagree", id)
		}
	}
}

func TestEpochDestroy(t *testing.T) {
	s := testSuite(t)
	e, err := Next(s, make([]byte, s.Nh()), nil, nil, []byte("gc"))
	if err != nil {
		t.Fatal(err)
	}
	held := [][]byte{e.JoinerSecret, e.WelcomeSecret, e.SenderDataSecret, e.EncryptionSecret,
		e.ExporterSecret, e.ExternalSecret, e.ConfirmationKey, e.MembershipKey, e.ResumptionPSK,
		e.EpochAuthenticator, e.InitSecret}
	e.Destroy()
	for i, b := range held {
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("secret %d not zeroed", i)
		}
	}
	if _, err := e.Exporter("x", nil, 32); err != ErrDestroyed {
		t.Errorf("Exporter after Destroy: %v", err)
	}
	if _, _, err := e.ExternalKeyPair(); err != ErrDestroyed {
		t.Errorf("ExternalKeyPair after Destroy: %v", err)
	}
	if e.VerifyConfirmationTag([]byte("x"), make([]byte, s.Nh())) || e.VerifyMembershipTag([]byte("x"), make([]byte, s.Nh())) {
		t.Error("tags verify after Destroy")
	}
	e2, _ := Next(s, make([]byte, s.Nh()), nil, nil, []byte("gc"))
	enc := e2.EncryptionSecret
	e2.ConsumeEncryptionSecret()
	if e2.EncryptionSecret != nil || !bytes.Equal(enc, make([]byte, len(enc))) {
		t.Error("ConsumeEncryptionSecret")
	}
}

func TestPSKSecret(t *testing.T) {
	s := testSuite(t)
	zero, err := PSKSecret(s, nil)
	if err != nil || !bytes.Equal(zero, make([]byte, s.Nh())) {
		t.Fatalf("no PSKs: %x %v", zero, err)
	}
	a := PSK{ID: encodeExternalPSKID([]byte("a"), make([]byte, s.Nh())), Value: []byte("psk a")}
	b := PSK{ID: encodeExternalPSKID([]byte("b"), make([]byte, s.Nh())), Value: []byte("psk b")}
	ab, _ := PSKSecret(s, []PSK{a, b})
	ba, _ := PSKSecret(s, []PSK{b, a})
	if bytes.Equal(ab, ba) {
		t.Error("PSK order does not matter")
	}
	if _, err := PSKSecret(s, make([]PSK, MaxPSKs+1)); err != ErrTooManyPSKs {
		t.Errorf("too many PSKs: %v", err)
	}
}

func TestTranscriptHashes(t *testing.T) {
	s := testSuite(t)
	c0 := ConfirmedTranscriptHash(s, nil, []byte("commit 0"))
	i0, err := InterimTranscriptHash(s, c0, []byte("tag 0"))
	if err != nil {
		t.Fatal(err)
	}
	c1 := ConfirmedTranscriptHash(s, i0, []byte("commit 1"))
	if bytes.Equal(c0, c1) || len(c1) != s.Nh() {
		t.Fatal("transcript does not chain")
	}
	// The tag is length-prefixed: moving a byte between hash and tag
	// changes the result.
	x, _ := InterimTranscriptHash(s, []byte("ab"), []byte("c"))
	y, _ := InterimTranscriptHash(s, []byte("a"), []byte("bc"))
	if bytes.Equal(x, y) {
		t.Fatal("InterimTranscriptHashInput is not length-prefixed")
	}
}

func TestHistory(t *testing.T) {
	s := testSuite(t)
	var h History
	var trees []*SecretTree
	for epoch := uint64(1); epoch <= 4; epoch++ {
		tree, _ := newTree(t, s, 2)
		trees = append(trees, tree)
		if err := h.Push(&PastEpoch{Epoch: epoch, SenderDataSecret: bytes.Repeat([]byte{1}, 32), Tree: tree}); err != nil {
			t.Fatal(err)
		}
	}
	if h.Len() != PastEpochs {
		t.Fatalf("kept %d epochs, want %d", h.Len(), PastEpochs)
	}
	if h.Get(1) != nil || h.Get(2) != nil || h.Get(3) == nil || h.Get(4) == nil {
		t.Fatal("wrong epochs kept")
	}
	if !trees[0].dead || !trees[1].dead || trees[2].dead {
		t.Fatal("evicted epochs not destroyed")
	}
	if err := h.Push(&PastEpoch{Epoch: 4}); err != ErrEpochOrder {
		t.Fatalf("repeated epoch: %v", err)
	}
	p, err := h.Get(4).PrepareApplication(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Get(4).Tree.Commit(p); err != nil {
		t.Fatal(err)
	}
	h.Destroy()
	if !trees[3].dead || h.Len() != 0 {
		t.Fatal("Destroy")
	}
	none := History{Max: -1}
	none.Push(&PastEpoch{Epoch: 1, Tree: trees[0]})
	if none.Len() != 0 {
		t.Fatal("Max -1 kept an epoch")
	}
}
