package org

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// repoLabels reads the string constants of crypto/internal/label, which
// this package cannot import, from its source.
func repoLabels(t *testing.T) []string {
	fs := token.NewFileSet()
	file, err := parser.ParseFile(fs, filepath.Join("..", "..", "crypto", "internal", "label", "label.go"), nil, 0)
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
	if len(out) < 10 {
		t.Fatalf("found only %d labels in crypto/internal/label", len(out))
	}
	return out
}

// TestLabelsDistinct: no label of this package is a prefix of another, or
// of a label of crypto/internal/label, or the reverse.
func TestLabelsDistinct(t *testing.T) {
	all := append(append([]string(nil), allLabels...), repoLabels(t)...)
	for i, a := range all {
		if i < len(allLabels) && !strings.HasPrefix(a, "moat/v1/org/") {
			t.Errorf("label %q outside moat/v1/org/", a)
		}
		for j, b := range all {
			if i != j && strings.HasPrefix(a, b) {
				t.Errorf("label %q has label %q as a prefix", a, b)
			}
		}
	}
}

// TestTypeBytesDisjoint: the type bytes are distinct from each other, from
// the crypto/keys tags (0x01–0x12) and from the PQXDH and ratchet types
// (0x21–0x24).
func TestTypeBytesDisjoint(t *testing.T) {
	types := []byte{
		typeDeviceCertificate, typeTrustBundle, typeEnrolmentCode, typeEnrolmentRequest, typeApproval,
		typeCARotation, typeAdminRoster, typeOrgChart, typePolicyBundle, typeEscrowPolicy, typeRevocation,
		typeWipeInstruction, typeTimelineEntry, typeUserValue, typeTenantState,
	}
	seen := map[byte]bool{}
	for _, b := range types {
		if seen[b] || b < 0x30 || b > 0x3f {
			t.Errorf("type byte %#x reused or outside 0x30–0x3f", b)
		}
		seen[b] = true
	}
}
