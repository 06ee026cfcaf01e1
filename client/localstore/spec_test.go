package localstore_test

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/moat-im/moat/client/localstore"
)

// TestSpecDecryption reads a store written by DB with nothing but the
// byte layouts and derivations of docs/spec/client-store.md, written out
// here independently of the implementation, so that the two cannot drift.
func TestSpecDecryption(t *testing.T) {
	dir := t.TempDir()
	pass := []byte("spec passphrase")
	params := localstore.Argon2Params{Time: 2, MemoryKiB: 128, Threads: 2}
	s, err := localstore.Open(dir, localstore.Options{Passphrase: pass, Argon2: params, MemTableSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	scope, kind, id, value := "conversation", "msg", []byte{0x00, 0x01, 0xff}, []byte("the value")
	if err := s.Update(func(tx localstore.Tx) error { return tx.Put(localstore.Scope(scope), kind, id, value) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// §Header.
	kt, err := os.ReadFile(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if len(kt) != 128+72 {
		t.Fatalf("key table of %d bytes, want a header and one slot", len(kt))
	}
	h := kt[:128]
	if string(h[:8]) != "moatlsk\x01" || h[8] != 1 || h[126] != 0 || h[127] != 0 {
		t.Fatalf("header fields: %x", h)
	}
	tm, m, p := binary.BigEndian.Uint32(h[9:]), binary.BigEndian.Uint32(h[13:]), h[17]
	if tm != 2 || m != 128 || p != 2 || binary.BigEndian.Uint32(h[50:]) != 72 {
		t.Fatalf("parameters t=%d m=%d p=%d slot size %d", tm, m, p, binary.BigEndian.Uint32(h[50:]))
	}
	salt := h[18:50]
	// §Key derivation.
	w := argon2.IDKey(pass, salt, tm, m, p, 32)
	open := func(key, sealed, ad []byte) []byte {
		t.Helper()
		a, err := chacha20poly1305.NewX(key)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := a.Open(nil, sealed[:24], sealed[24:], ad)
		if err != nil {
			t.Fatalf("AEAD open: %v", err)
		}
		return pt
	}
	tk := open(w, h[54:126], append([]byte("moat localstore v1 table key"), h[:54]...))
	sk, _ := hkdf.Key(sha256.New, tk, nil, "moat localstore v1 slot key", 32)
	ik, _ := hkdf.Key(sha256.New, tk, nil, "moat localstore v1 index key", 32)
	// §Keys.
	mac := func(parts ...[]byte) []byte {
		m := hmac.New(sha256.New, ik)
		for _, p := range parts {
			m.Write(p)
		}
		return m.Sum(nil)[:16]
	}
	l := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	scopeTag := mac([]byte("scope"), l(scope))
	kindTag := mac([]byte("kind"), l(scope), l(kind))
	key := append(append(append(append([]byte("r"), scopeTag...), make([]byte, 8)...), kindTag...), id...)
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, "records")).WithLogger(nil).WithReadOnly(true))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v []byte
	if err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	}); err != nil {
		t.Fatalf("record key per §Keys: %v", err)
	}
	// §Values and §Key slots.
	if v[0] != 1 {
		t.Fatalf("record version %d", v[0])
	}
	slot := binary.BigEndian.Uint32(v[1:])
	slotBytes := kt[128+72*int(slot) : 128+72*(int(slot)+1)]
	rk := open(sk, slotBytes, binary.BigEndian.AppendUint32([]byte("moat localstore v1 slot"), slot))
	ad := append([]byte("moat localstore v1 record"), l(scope)...)
	ad = append(ad, l(kind)...)
	ad = binary.BigEndian.AppendUint16(ad, uint16(len(id)))
	ad = append(ad, id...)
	ad = binary.BigEndian.AppendUint32(ad, slot)
	if got := open(rk, v[5:], ad); string(got) != string(value) {
		t.Fatalf("decrypted %q, want %q", got, value)
	}
}
