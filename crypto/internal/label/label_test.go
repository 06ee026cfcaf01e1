package label

import (
	"strings"
	"testing"
)

func TestLabelsDistinct(t *testing.T) {
	for i, a := range All {
		for j, b := range All {
			if i != j && strings.HasPrefix(a, b) {
				t.Errorf("label %q has label %q as a prefix", a, b)
			}
		}
	}
}
