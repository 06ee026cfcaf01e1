package kt_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// sigCacheHeader is the SignatureCache header of a client of bundle:
// SHA-256 of its CA key and its tenant.
func sigCacheHeader(b *org.TrustBundle) []byte {
	id := sha256.Sum256(b.CA.Bytes())
	return append(id[:], b.Tenant[:]...)
}

// encodeSigCache encodes keys under header.
func encodeSigCache(header []byte, keys ...[32]byte) []byte {
	out := binary.BigEndian.AppendUint32(bytes.Clone(header), uint32(32*len(keys)))
	for _, k := range keys {
		out = append(out, k[:]...)
	}
	return out
}

// sigCacheSeeds returns a world, the state of a client that verified a
// lookup, its signature cache, and seed encodings: the real cache, an
// empty one, one with duplicates, and caches of another tenant and of
// another CA key.
func sigCacheSeeds(t testing.TB) (*world, []byte, []byte, [][]byte) {
	w := newWorld(t, 74)
	c := w.client(t)
	must(c.VerifyLookup(w.tenant, w.bob, must(w.d.Lookup(w.bob, 0)), at(2)))
	cache := must(c.MarshalSignatureCache())
	h := sigCacheHeader(w.d.TrustBundle())
	k1, k2 := [32]byte(cache[52:84]), [32]byte{7}
	otherTenant := bytes.Clone(h)
	otherTenant[40] ^= 1
	otherCA := bytes.Clone(h)
	otherCA[0] ^= 1
	seeds := [][]byte{
		cache,
		encodeSigCache(h),
		encodeSigCache(h, k2, k1, k2),
		encodeSigCache(otherTenant, k1, k2),
		encodeSigCache(otherCA, k2),
		encodeSigCache(h, k1)[:80],           // a key cut short
		append(encodeSigCache(h, k1), 0),     // trailing byte
		encodeSigCache(h, k1, k2)[:len(h)+2], // length cut short
		append(binary.BigEndian.AppendUint32(bytes.Clone(h), 33), make([]byte, 33)...), // not whole keys
	}
	return w, must(c.MarshalState()), cache, seeds
}

// FuzzRestoreSignatureCache: RestoreSignatureCache (cache.go) never
// panics; it refuses a non-canonical encoding with ErrMalformed and then
// leaves the cache byte-identical; it never changes the client state; a
// cache of the client's tenant and CA key, restored into a client without
// one, marshals back to its keys without duplicates (within the cache's
// bound); a cache of another tenant or CA key adds nothing.
func FuzzRestoreSignatureCache(f *testing.F) {
	w, st, cache, seeds := sigCacheSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	cfg := w.d.Config(maxAge)
	h := sigCacheHeader(cfg.Bundle)
	f.Fuzz(func(t *testing.T, data []byte) {
		// A client with a cache already: a refusal leaves it as it was.
		full := must(kt.RestoreClient(cfg, st))
		ok(t, full.RestoreSignatureCache(cache))
		before := must(full.MarshalSignatureCache())
		err := full.RestoreSignatureCache(data)
		if !bytes.Equal(must(full.MarshalState()), st) {
			t.Fatal("restoring a signature cache changed the client state")
		}
		canonical := len(data) >= 52 && int(binary.BigEndian.Uint32(data[48:52])) == len(data)-52 && (len(data)-52)%32 == 0
		if err != nil {
			if !errors.Is(err, kt.ErrMalformed) {
				t.Fatalf("unexpected error %T: %v", err, err)
			}
			if canonical {
				t.Fatalf("canonical encoding refused: %v", err)
			}
			if !bytes.Equal(must(full.MarshalSignatureCache()), before) {
				t.Fatal("a refused cache changed the cache")
			}
			return
		}
		if !canonical {
			t.Fatal("non-canonical encoding accepted")
		}
		// Into a client without a cache.
		empty := must(kt.RestoreClient(cfg, st))
		ok(t, empty.RestoreSignatureCache(data))
		out := must(empty.MarshalSignatureCache())
		var want [][32]byte
		if bytes.Equal(data[:48], h) {
			seen := map[[32]byte]bool{}
			for i := 52; i < len(data); i += 32 {
				if k := [32]byte(data[i : i+32]); !seen[k] {
					seen[k] = true
					want = append(want, k)
				}
			}
		}
		if len(want) <= 4096 && !bytes.Equal(out, encodeSigCache(h, want...)) {
			t.Fatalf("restored cache marshals to %x, want its %d distinct keys", out, len(want))
		}
		// What it marshals to restores to itself.
		again := must(kt.RestoreClient(cfg, st))
		ok(t, again.RestoreSignatureCache(out))
		if !bytes.Equal(must(again.MarshalSignatureCache()), out) {
			t.Fatal("a marshalled cache does not restore to itself")
		}
	})
}

// TestSignatureCacheOtherTenantOrCA: a signature cache saved by a client
// of another tenant, or under another CA key, restores as nothing: its
// entries stand for signatures verified under other keys.
func TestSignatureCacheOtherTenantOrCA(t *testing.T) {
	w, st, cache, _ := sigCacheSeeds(t)
	cfg := w.d.Config(maxAge)
	empty := encodeSigCache(sigCacheHeader(cfg.Bundle))
	for _, i := range []int{0, 31, 32, 47} { // CA id, then tenant
		other := bytes.Clone(cache)
		other[i] ^= 1
		c := must(kt.RestoreClient(cfg, st))
		ok(t, c.RestoreSignatureCache(other))
		if got := must(c.MarshalSignatureCache()); !bytes.Equal(got, empty) {
			t.Fatalf("header byte %d changed: the cache was restored", i)
		}
	}
	// After a CA rotation the old CA's cache is ignored too.
	must(w.d.RotateCA(at(3)))
	must(w.d.PublishEpoch(at(4)))
	c := w.client(t) // pinned to the new bundle
	ok(t, c.RestoreSignatureCache(cache))
	if got := must(c.MarshalSignatureCache()); !bytes.Equal(got, encodeSigCache(sigCacheHeader(w.d.TrustBundle()))) {
		t.Fatal("a cache of the old CA key was restored under the new one")
	}
}
