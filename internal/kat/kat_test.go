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
	for _, m := range [][]byte{
		nil,
		{2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0},               // version 2
		append([]byte{1, 0x40, 0, 0, 0, 1}, make([]byte, 24)...), // unknown flag
		append([]byte{1, 0x02, 0, 0, 0, 1}, make([]byte, 24)...), // KEM_CT without ESTABLISH
		append([]byte{1, 0, 0, 0, 0, 1}, make([]byte, 8+15)...),  // ciphertext shorter than a tag
	} {
		if _, err := parseHeader(m); err == nil {
			t.Errorf("parseHeader(%x) succeeded", m)
		}
	}
}
