package localstore

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkPut1KiB: one durable Update of one new 1 KiB record (key slot
// written and synced, record committed and synced).
func BenchmarkPut1KiB(b *testing.B) {
	s := openTest(b, b.TempDir(), testOptions())
	defer s.Close()
	v := make([]byte, 1024)
	var id [8]byte
	b.SetBytes(1024)
	b.ResetTimer()
	for i := range b.N {
		binary.BigEndian.PutUint64(id[:], uint64(i))
		if err := s.Update(func(tx Tx) error { return tx.Put("conv", "msg", id[:], v) }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDelete1KiB: one durable Update deleting one record, with its
// key erased in place.
func BenchmarkDelete1KiB(b *testing.B) {
	s := openTest(b, b.TempDir(), testOptions())
	defer s.Close()
	v := make([]byte, 1024)
	fill(b, s, b.N, v)
	var id [8]byte
	b.ResetTimer()
	for i := range b.N {
		binary.BigEndian.PutUint64(id[:], uint64(i))
		if err := s.Update(func(tx Tx) error { return tx.Delete("conv", "msg", id[:]) }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet1KiB: a View reading one 1 KiB record of 10k.
func BenchmarkGet1KiB(b *testing.B) {
	s := openTest(b, b.TempDir(), testOptions())
	defer s.Close()
	const n = 10000
	fill(b, s, n, make([]byte, 1024))
	var id [8]byte
	b.SetBytes(1024)
	b.ResetTimer()
	for i := range b.N {
		binary.BigEndian.PutUint64(id[:], uint64(i%n))
		err := s.View(func(tx Tx) error {
			_, err := tx.Get("conv", "msg", id[:])
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// fill puts n records of value v into scope "conv", 1000 per Update.
func fill(b *testing.B, s *DB, n int, v []byte) {
	var id [8]byte
	for start := 0; start < n; start += 1000 {
		err := s.Update(func(tx Tx) error {
			for i := start; i < min(n, start+1000); i++ {
				binary.BigEndian.PutUint64(id[:], uint64(i))
				if err := tx.Put("conv", "msg", id[:], v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeyTable100k reports the key table's size holding 100k records
// (1 KiB each), the time to open the store (badger and the key-table scan,
// with cheap Argon2id), and to DeleteScope all of them durably.
func BenchmarkKeyTable100k(b *testing.B) {
	const n = 100000
	for range b.N {
		dir := b.TempDir()
		s := openTest(b, dir, testOptions())
		fill(b, s, n, make([]byte, 1024))
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		st, err := os.Stat(filepath.Join(dir, keyTableName))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(st.Size()), "keytable-bytes")
		b.ReportMetric(float64(st.Size())/n, "bytes/record")
		t0 := time.Now()
		s = openTest(b, dir, testOptions())
		b.ReportMetric(float64(time.Since(t0).Milliseconds()), "open-ms")
		// As after a crash: recovery scans every record.
		s.kt.leaked = true
		s.Close()
		t0 = time.Now()
		s = openTest(b, dir, testOptions())
		b.ReportMetric(float64(time.Since(t0).Milliseconds()), "recovering-open-ms")
		t0 = time.Now()
		if err := s.Update(func(tx Tx) error { return tx.DeleteScope("conv") }); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(t0).Milliseconds()), "deletescope-ms")
		s.Close()
		st, _ = os.Stat(filepath.Join(dir, keyTableName))
		b.ReportMetric(float64(st.Size()), "keytable-bytes-after-delete")
	}
}

// BenchmarkOpen: opening an existing, small store with the default
// Argon2id parameters (RFC 9106 second option: t=3, 64 MiB, p=4). This is
// the cost of unlocking, dominated by Argon2id.
func BenchmarkOpen(b *testing.B) {
	benchOpen(b, Options{Passphrase: []byte(testPass), MemTableSize: 8 << 20})
}

// BenchmarkOpenKeyFile: opening the same store protected by a key file
// (no Argon2id): badger's open and the key-table scan.
func BenchmarkOpenKeyFile(b *testing.B) {
	kf := filepath.Join(b.TempDir(), "key")
	if err := CreateKeyFile(kf); err != nil {
		b.Fatal(err)
	}
	benchOpen(b, Options{KeyFile: kf, MemTableSize: 8 << 20})
}

// benchOpen measures opening a store of 100 small records with opts.
func benchOpen(b *testing.B, opts Options) {
	dir := b.TempDir()
	s := openTest(b, dir, opts)
	fill(b, s, 100, make([]byte, 1024))
	s.Close()
	b.ResetTimer()
	for range b.N {
		s := openTest(b, dir, opts)
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}
