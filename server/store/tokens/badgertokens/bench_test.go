package badgertokens_test

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/store/tokens/badgertokens"
)

// BenchmarkSpend: one durable spend (a transaction and a sync) per op.
func BenchmarkSpend(b *testing.B) {
	s := open(b, b.TempDir())
	var key, nonce [32]byte
	key[0] = 1
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(nonce[:], uint64(i))
		if err := s.Spend(key, nonce); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHasVerifier: the check of a MAC token's verifier at each send.
func BenchmarkHasVerifier(b *testing.B) {
	s := open(b, b.TempDir())
	mb := sealed.MailboxID{1}
	v := deliverytoken.Verifier{2}
	if err := s.Add(mb, v); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, err := s.HasVerifier(mb, v); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkSpendParallel: concurrent durable spends, which group commit
// batches into one transaction and one sync.
func BenchmarkSpendParallel(b *testing.B) {
	s := open(b, b.TempDir())
	var key [32]byte
	key[0] = 1
	var n atomic.Uint64
	b.SetParallelism(16)
	before := badgertokens.Syncs(s)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var nonce [32]byte
			binary.BigEndian.PutUint64(nonce[:], n.Add(1))
			if err := s.Spend(key, nonce); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(badgertokens.Syncs(s)-before)/float64(b.N), "syncs/op")
}

// BenchmarkChargeParallel: concurrent durable quota charges of 64 devices
// of one tenant (two counters each, as the relay charges a device and its
// tenant), batched by group commit.
func BenchmarkChargeParallel(b *testing.B) {
	s := open(b, b.TempDir())
	var n atomic.Uint64
	b.SetParallelism(16)
	before := badgertokens.Syncs(s)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			dev := []byte{'d', byte(n.Add(1) % 64)}
			err := s.Charge([][]byte{dev, []byte("tenant")}, func(old [][]byte) ([][]byte, time.Duration, error) {
				out := make([][]byte, len(old))
				for i, v := range old {
					var c uint64
					if v != nil {
						c = binary.BigEndian.Uint64(v)
					}
					out[i] = binary.BigEndian.AppendUint64(nil, c+1)
				}
				return out, time.Hour, nil
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(badgertokens.Syncs(s)-before)/float64(b.N), "syncs/op")
}
