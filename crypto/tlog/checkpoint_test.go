package tlog

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// The example of c2sp.org/tlog-checkpoint.
const c2spCheckpoint = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

func TestParseCheckpoint(t *testing.T) {
	c, err := ParseCheckpoint([]byte(c2spCheckpoint))
	if err != nil {
		t.Fatal(err)
	}
	if c.Origin != "example.com/behind-the-sofa" || c.Size != 20852163 || c.Root.String() != "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=" || c.Extensions != nil {
		t.Fatalf("parsed %+v", c)
	}
	b, err := c.Marshal()
	if err != nil || string(b) != c2spCheckpoint {
		t.Fatalf("Marshal = %q, %v", b, err)
	}
	ext := c2spCheckpoint + "ext one\next two\n"
	c, err = ParseCheckpoint([]byte(ext))
	if err != nil || len(c.Extensions) != 2 || c.Extensions[1] != "ext two" {
		t.Fatalf("extensions: %+v %v", c, err)
	}
	if b, _ := c.Marshal(); string(b) != ext {
		t.Fatal("extension round trip")
	}
	empty := "o.example/x\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
	if c, err := ParseCheckpoint([]byte(empty)); err != nil || c.Size != 0 || c.Root != EmptyRoot {
		t.Fatalf("empty tree: %v", err)
	}
}

func TestParseCheckpointRejects(t *testing.T) {
	const root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
	for name, text := range map[string]string{
		"empty":                   "",
		"no final newline":        "o.example\n1\n" + root,
		"two lines":               "o.example\n1\n",
		"empty origin":            "\n1\n" + root + "\n",
		"origin with space":       "o.example x\n1\n" + root + "\n",
		"origin with plus":        "o.example+x\n1\n" + root + "\n",
		"origin with tab":         "o.example\tx\n1\n" + root + "\n",
		"origin with nbsp":        "o.example\u00a0x\n1\n" + root + "\n",
		"origin too long":         strings.Repeat("o", 256) + "\n1\n" + root + "\n",
		"leading zero":            "o.example\n01\n" + root + "\n",
		"plus sign":               "o.example\n+1\n" + root + "\n",
		"negative":                "o.example\n-1\n" + root + "\n",
		"size 2^63":               "o.example\n9223372036854775808\n" + root + "\n",
		"size 20 digits":          "o.example\n18446744073709551615\n" + root + "\n",
		"hex size":                "o.example\n0x1\n" + root + "\n",
		"root unpadded":           "o.example\n1\n" + strings.TrimSuffix(root, "=") + "\n",
		"root url alphabet":       "o.example\n1\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n",
		"root non-canonical bits": "o.example\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n",
		"root 31 bytes":           "o.example\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxqw==\n",
		"empty extension":         "o.example\n1\n" + root + "\n\nx\n",
		"trailing empty line":     "o.example\n1\n" + root + "\n\n",
		"control in extension":    "o.example\n1\n" + root + "\nx\x00y\n",
		"CR":                      "o.example\r\n1\n" + root + "\n",
		"invalid UTF-8":           "o.example\n1\n" + root + "\n\xff\n",
	} {
		if c, err := ParseCheckpoint([]byte(text)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseCheckpoint = %+v, %v", name, c, err)
		}
	}
}

func TestCheckpointMarshalRejects(t *testing.T) {
	for name, c := range map[string]*Checkpoint{
		"origin":    {Origin: "a b"},
		"size":      {Origin: "o", Size: 1 << 63},
		"extension": {Origin: "o", Extensions: []string{""}},
		"newline":   {Origin: "o", Extensions: []string{"a\nb"}},
	} {
		if _, err := c.Marshal(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Marshal accepted %+v", name, c)
		}
	}
	// Marshal never aliases or modifies its input.
	c := &Checkpoint{Origin: "o", Extensions: []string{"x"}}
	a, _ := c.Marshal()
	b, _ := c.Marshal()
	if !bytes.Equal(a, b) || c.Extensions[0] != "x" {
		t.Fatal("Marshal not deterministic")
	}
}

func TestConflictBody(t *testing.T) {
	e := &ConflictError{Size: 20852014}
	if string(e.Body()) != "20852014\n" {
		t.Fatal(string(e.Body()))
	}
	if n, err := ParseConflictBody(e.Body()); err != nil || n != 20852014 {
		t.Fatal(n, err)
	}
	for _, b := range []string{"", "1", "01\n", "1\n\n", " 1\n", "-1\n"} {
		if _, err := ParseConflictBody([]byte(b)); err == nil {
			t.Errorf("ParseConflictBody(%q) accepted", b)
		}
	}
}
