// Package vecstate clears the upper halves of the x86 vector registers
// after calls into code that leaves them dirty.
//
// circl's AVX2 assembly (ML-KEM-768, ML-DSA and the four-way Keccak it
// shares) returns without VZEROUPPER. Until something clears the upper YMM
// state, every later legacy-SSE instruction on that thread (SHA-NI for
// SHA-256, AES-NI) is slowed: on the benchmark machine one ML-KEM
// decapsulation followed by 20 HKDF-SHA-256 extractions took 5–8 ms
// instead of well under 1 ms (docs/performance.md "circl and the vector
// unit"). Callers of those circl functions call Clean right after them.
package vecstate
