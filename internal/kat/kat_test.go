package kat

import (
	"bytes"
	"testing"
)

// TestGenerateDeterministic checks that two runs in one process agree; the
// package tests of crypto/pqxdh and crypto/ratchet compare against the
// committed files, written by another process.
func TestGenerateDeterministic(t *testing.T) {
	var out [2][2][]byte
	for i := range out {
		v, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		if out[i][0], err = v.PQXDHJSON(); err != nil {
			t.Fatal(err)
		}
		if out[i][1], err = v.RatchetJSON(); err != nil {
			t.Fatal(err)
		}
	}
	for j, name := range []string{PQXDHPath, RatchetPath} {
		if !bytes.Equal(out[0][j], out[1][j]) {
			t.Errorf("%s: two runs of Generate differ: %s", name, Diff(out[0][j], out[1][j]))
		}
	}
}

func TestParseHeaderRejects(t *testing.T) {
	// A valid minimal message: type 0x23, no flags, chain 1, n 0, ack 0,
	// and a 16-byte ciphertext (an empty plaintext's tag).
	valid := append([]byte{0x23, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 16)...)
	if _, err := parseHeader(valid); err != nil {
		t.Fatalf("parseHeader(valid) = %v", err)
	}
	with := func(i int, v byte) []byte {
		m := append([]byte(nil), valid...)
		m[i] = v
		return m
	}
	for name, m := range map[string][]byte{
		"empty":                         nil,
		"old version byte":              with(0, 0x01),
		"unknown type":                  with(0, 0x24),
		"unknown flag":                  with(1, 0x40),
		"KEM_CT without ESTABLISH":      with(1, 0x02),
		"KEM_PUB without ESTABLISH":     with(1, 0x04),
		"chain 0":                       with(5, 0),
		"ciphertext shorter than a tag": valid[:len(valid)-1],
	} {
		if _, err := parseHeader(m); err == nil {
			t.Errorf("%s: parseHeader(%x) succeeded", name, m)
		}
	}
}
