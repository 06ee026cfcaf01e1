package mls

import (
	"encoding/hex"
	"slices"
	"testing"
)

// unhex decodes a hex string from a test vector.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// logPassCounts reports per-suite pass counts of a vector file and fails
// the test if no vector passed at all.
func logPassCounts(t *testing.T, file string, passed, total map[uint16]int) {
	t.Helper()
	suites := make([]int, 0, len(total))
	for cs := range total {
		suites = append(suites, int(cs))
	}
	slices.Sort(suites)
	sum, all := 0, 0
	for _, cs := range suites {
		t.Logf("%s: suite %d: %d/%d passed", file, cs, passed[uint16(cs)], total[uint16(cs)])
		sum += passed[uint16(cs)]
		all += total[uint16(cs)]
	}
	t.Logf("%s: %d/%d passed", file, sum, all)
	if sum == 0 {
		t.Fatalf("%s: no vector passed", file)
	}
}
