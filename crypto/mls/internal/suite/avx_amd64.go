//go:build amd64 && !purego

package suite

import "golang.org/x/sys/cpu"

// vzeroupper clears the upper halves of the YMM registers.
//
//go:noescape
func vzeroupper()

var hasAVX = cpu.X86.HasAVX

// cleanVectorState is called after circl's ML-KEM, whose AVX2 assembly
// returns without VZEROUPPER. Until something clears it, the dirty upper
// YMM state slows every later SSE instruction; on the shared benchmark
// machine SHA-256 (SHA-NI, used by every HKDF and tree hash) ran about 200
// times slower (docs/performance.md §MLS).
func cleanVectorState() {
	if hasAVX {
		vzeroupper()
	}
}
