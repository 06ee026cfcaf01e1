package badgerstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/moat-im/moat/keyserver/store"
)

// BenchmarkGetVRFOutputs reads stored VRF outputs (112 bytes each, as the
// directory keeps them) of 32,768 labels in batches of 1,024, as the first
// epoch after a restart does (one GetVRFOutputs per epoch); one op is one
// label's output. For instruction counts:
//
//	bash .ci/instructions ./keyserver/store/badgerstore 4096 BenchmarkGetVRFOutputs
func BenchmarkGetVRFOutputs(b *testing.B) {
	ctx := context.Background()
	s := openTest(b, b.TempDir(), 0)
	defer s.Close()
	key := [32]byte{1}
	const n = 32768
	inputs := make([][32]byte, n)
	outs := make([]store.VRFOutput, n)
	for i := range inputs {
		inputs[i] = sha256.Sum256(binary.BigEndian.AppendUint32(nil, uint32(i)))
		outs[i] = store.VRFOutput{Input: inputs[i], Output: make([]byte, 112)}
	}
	if err := s.PutVRFOutputs(ctx, key, outs); err != nil {
		b.Fatal(err)
	}
	found := 0
	b.ResetTimer()
	for i := 0; i < b.N; i += 1024 {
		lo := i % n
		batch := inputs[lo:min(lo+1024, n, lo+b.N-i)]
		if err := s.GetVRFOutputs(ctx, key, batch, func(int, []byte) { found++ }); err != nil {
			b.Fatal(err)
		}
	}
	if found != b.N {
		b.Fatalf("found %d of %d", found, b.N)
	}
}
