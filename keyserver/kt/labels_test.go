package kt_test

import (
	"bytes"
	"encoding/hex"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/moat-im/moat/crypto/vrf"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// sourceLabels reads the "moat/" string constants of a Go file of this
// repository (labels of internal or unexported constants that this package
// cannot import).
func sourceLabels(t *testing.T, path ...string) []string {
	t.Helper()
	fs := token.NewFileSet()
	file, err := parser.ParseFile(fs, filepath.Join(append([]string{"..", ".."}, path...)...), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ast.Inspect(file, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(s, "moat/") {
				out = append(out, s)
			}
		}
		return true
	})
	if len(out) == 0 {
		t.Fatalf("no labels in %v", path)
	}
	return out
}

// TestLabelsDistinct: no label of this package is a prefix of another, nor
// of a label of keyserver/org, crypto/tlog or crypto/internal/label, nor
// the reverse.
func TestLabelsDistinct(t *testing.T) {
	own := sourceLabels(t, "keyserver", "kt", "labels.go")
	if len(own) != 4 {
		t.Fatalf("found %d labels in labels.go", len(own))
	}
	all := append([]string(nil), own...)
	all = append(all, sourceLabels(t, "keyserver", "org", "labels.go")...)
	all = append(all, sourceLabels(t, "crypto", "tlog", "labels.go")...)
	all = append(all, sourceLabels(t, "crypto", "internal", "label", "label.go")...)
	for i, a := range all {
		if i < len(own) && !strings.HasPrefix(a, "moat/v1/kt/") {
			t.Errorf("label %q outside moat/v1/kt/", a)
		}
		for j, b := range all {
			if i != j && (i < len(own) || j < len(own)) && strings.HasPrefix(a, b) {
				t.Errorf("label %q has label %q as a prefix", a, b)
			}
		}
	}
}

// TestAlphas checks the VRF inputs of docs/spec/directory.md §Labels byte
// for byte, and that user and org inputs never coincide.
func TestAlphas(t *testing.T) {
	tenant := org.TenantID{0x7e, 0x01}
	user := org.UserID{0x05, 0x01}
	want := "6d6f61742f76312f6b742f75736572" + "00" + "7e01" + strings.Repeat("00", 14) + "0501" + strings.Repeat("00", 14)
	if got := hex.EncodeToString(kt.UserAlpha(tenant, user)); got != want {
		t.Errorf("UserAlpha = %s, want %s", got, want)
	}
	oa, err := kt.OrgAlpha(tenant, org.OrgLabelTrustBundle)
	ok(t, err)
	want = "6d6f61742f76312f6b742f6f7267" + "00" + "7e01" + strings.Repeat("00", 14) + "0c" + hex.EncodeToString([]byte("trust-bundle"))
	if got := hex.EncodeToString(oa); got != want {
		t.Errorf("OrgAlpha = %s, want %s", got, want)
	}
	for _, bad := range []string{"", strings.Repeat("x", 256), "\xff"} {
		if _, err := kt.OrgAlpha(tenant, bad); err == nil {
			t.Errorf("OrgAlpha(%q) accepted", bad)
		}
	}
	if _, err := kt.Alpha(tenant, org.Label{User: user, Org: "x"}); err == nil {
		t.Error("label naming both a user and an org label accepted")
	}
	// The label is the first half of beta, and the client's check agrees
	// with the directory's evaluation.
	sk := must(vrf.NewPrivateKey(bytes.Repeat([]byte{7}, 32)))
	alpha := kt.UserAlpha(tenant, user)
	label, pi := kt.EvaluateLabel(sk, alpha)
	beta := must(vrf.Verify(sk.Public(), alpha, pi))
	if !bytes.Equal(label[:], beta[:32]) || must(kt.VerifyLabel(sk.Public(), alpha, pi)) != label {
		t.Fatal("label is not beta[:32]")
	}
	if _, err := kt.VerifyLabel(sk.Public(), kt.UserAlpha(tenant, org.UserID{0x05, 0x02}), pi); err == nil {
		t.Fatal("proof verified for another user")
	}
}
