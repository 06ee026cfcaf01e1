//go:build amd64 && !purego

#include "textflag.h"

// func vzeroupper()
TEXT ·vzeroupper(SB), NOSPLIT|NOFRAME, $0-0
	VZEROUPPER
	RET

// func cpuidXGETBV1() uint32
// CPUID.(EAX=0DH, ECX=1):EAX; bit 2 says XGETBV with ECX = 1 (XINUSE) works.
TEXT ·cpuidXGETBV1(SB), NOSPLIT|NOFRAME, $0-4
	MOVL $0xD, AX
	MOVL $1, CX
	CPUID
	MOVL AX, ret+0(FP)
	RET

// func xinuse() uint64
// XGETBV with ECX = 1: the XINUSE bitmap of state components in use.
TEXT ·xinuse(SB), NOSPLIT|NOFRAME, $0-8
	MOVL $1, CX
	XGETBV
	SHLQ $32, DX
	ORQ  DX, AX
	MOVQ AX, ret+0(FP)
	RET
