package tlog

import (
	"strings"
	"testing"

	"github.com/moat-im/moat/crypto/internal/label"
)

// TestLabelsDistinct checks that no Moat label of this package is a prefix
// of another, nor of or by a label of crypto/internal/label.
func TestLabelsDistinct(t *testing.T) {
	all := append(append([]string(nil), moatLabels...), label.All...)
	for i, a := range moatLabels {
		for j, b := range all {
			if i != j && (strings.HasPrefix(a, b) || strings.HasPrefix(b, a)) {
				t.Errorf("label %q and label %q: one is a prefix of the other", a, b)
			}
		}
	}
	if len(subtreeV1) != 12 || len(logMLDSA65Type) != 1+len(labelLogMLDSA65)+1 {
		t.Error("fixed-size labels")
	}
}
