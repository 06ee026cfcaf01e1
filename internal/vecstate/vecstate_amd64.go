//go:build amd64 && !purego

package vecstate

import "golang.org/x/sys/cpu"

// vzeroupper clears the upper halves of the YMM registers.
//
//go:noescape
func vzeroupper()

var hasAVX = cpu.X86.HasAVX

// Clean clears the upper YMM state left by AVX code that did not.
func Clean() {
	if hasAVX {
		vzeroupper()
	}
}
