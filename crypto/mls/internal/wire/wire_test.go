package wire

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

// TestDeserializationVectors checks the variable-length headers of the
// MLS interop vectors (testdata/deserialization.json).
func TestDeserializationVectors(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/deserialization.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []struct {
		Header string `json:"vlbytes_header"`
		Length int    `json:"length"`
	}
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range vs {
		want, _ := hex.DecodeString(v.Header)
		var b cryptobyte.Builder
		AddVarLen(&b, v.Length)
		got, err := b.Bytes()
		if err != nil || hex.EncodeToString(got) != v.Header {
			t.Errorf("encode %d = %x, %v; want %s", v.Length, got, err, v.Header)
		}
		s := cryptobyte.String(want)
		var n int
		if !ReadVarLen(&s, &n) || n != v.Length || !s.Empty() {
			t.Errorf("decode %s = %d", v.Header, n)
		}
	}
	t.Logf("deserialization.json: %d/%d passed", len(vs), len(vs))
}

func TestReadVarLenRejects(t *testing.T) {
	for _, h := range []string{"", "40", "4000", "403f", "80", "80000000", "80003fff", "c0", "ffffffff"} {
		b, _ := hex.DecodeString(h)
		s := cryptobyte.String(b)
		var n int
		if ReadVarLen(&s, &n) {
			t.Errorf("ReadVarLen(%s) accepted %d", h, n)
		}
	}
	s := cryptobyte.String([]byte{0x05, 1, 2})
	var out []byte
	if ReadVarBytes(&s, &out) {
		t.Error("ReadVarBytes accepted a short body")
	}
}

func FuzzVarBytes(f *testing.F) {
	f.Add([]byte{0x03, 1, 2, 3})
	f.Add([]byte{0x40, 0x40})
	f.Fuzz(func(t *testing.T, in []byte) {
		s := cryptobyte.String(in)
		var v []byte
		if !ReadVarBytes(&s, &v) {
			return
		}
		var b cryptobyte.Builder
		AddVarBytes(&b, v)
		out, err := b.Bytes()
		if err != nil || string(out) != string(in[:len(in)-len(s)]) {
			t.Fatalf("round trip %x -> %x", in[:len(in)-len(s)], out)
		}
	})
}
