//go:build amd64 && !purego

package vecstate

import "golang.org/x/sys/cpu"

// vzeroupper clears the upper halves of the YMM registers.
//
//go:noescape
func vzeroupper()

func cpuidXGETBV1() uint32
func xinuse() uint64

var hasAVX = cpu.X86.HasAVX

// Clean clears the upper YMM state left by AVX code that did not.
func Clean() {
	if hasAVX {
		vzeroupper()
	}
}

// Dirty reports whether the upper YMM state of the calling thread is in use
// (XINUSE bit 2, Intel SDM Vol. 1 §13.6), for tests; known is false where
// the processor cannot tell. The caller must hold its OS thread
// (runtime.LockOSThread) between the code it checks and Dirty.
func Dirty() (dirty, known bool) {
	if !hasAVX || !cpu.X86.HasOSXSAVE || cpuidXGETBV1()&(1<<2) == 0 {
		return false, false
	}
	return xinuse()&(1<<2) != 0, true
}
